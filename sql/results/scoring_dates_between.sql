-- Distinct scoring dates in the history within [:first, :last], oldest first.
-- A skip scan (one index probe per date on the key's leading as_of_date)
-- instead of DISTINCT over every customer row of the period.
WITH RECURSIVE d (day) AS (
    SELECT min(as_of_date) FROM customer_category_history
    WHERE as_of_date BETWEEN :first AND :last
    UNION ALL
    SELECT (SELECT min(as_of_date) FROM customer_category_history WHERE as_of_date > d.day AND as_of_date <= :last)
    FROM d
    WHERE d.day IS NOT NULL
)
SELECT day FROM d WHERE day IS NOT NULL ORDER BY day
