-- No other session may change current rows between reading them (current_build)
-- and the swap; readers keep reading the previous rows until commit.
LOCK TABLE customer_categories IN EXCLUSIVE MODE
