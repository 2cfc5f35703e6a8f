"""Locust users of the HTTP service (driven headless by benchmarks/loadtest.py, ``make loadtest``).

Two user classes, run one at a time so each target is measured alone:

* ``CurrentCategoryUser``: ``GET /v1/companies/{company}/customers/{customer}``
  for customers drawn from the scored data (read path: results table);
* ``PredictUser``: ``POST /v1/customer/predict`` with one of the sampled
  customers' bills turned into a new pending bill (scoring path: feature
  query for the company + champion).

Each user paces itself with ``constant_throughput(LOADTEST_USER_RPS)``, so the
offered load is users x that rate.  The customers and the API key come from
the environment: ``LOADTEST_SAMPLE`` (JSON file written by loadtest.py) and
``LOADTEST_API_KEY``.
"""

from __future__ import annotations

import json
import os
import random
from urllib.parse import quote

from locust import constant_throughput, task
from locust.contrib.fasthttp import FastHttpUser

_SAMPLE = json.loads(open(os.environ["LOADTEST_SAMPLE"], encoding="utf-8").read())
_HEADERS = {"X-API-Key": os.environ["LOADTEST_API_KEY"]}
_RATE = float(os.environ.get("LOADTEST_USER_RPS", "10"))


class CurrentCategoryUser(FastHttpUser):
    """Reads the current category of random known customers."""

    wait_time = constant_throughput(_RATE)

    @task
    def current_category(self) -> None:
        company_id, customer_id = random.choice(_SAMPLE["customers"])
        self.client.get(
            f"/v1/companies/{quote(company_id, safe='')}/customers/{quote(customer_id, safe='')}",
            headers=_HEADERS,
            name="GET current category",
        )


class PredictUser(FastHttpUser):
    """Scores one new bill of a random known customer."""

    wait_time = constant_throughput(_RATE)

    @task
    def predict(self) -> None:
        body = dict(random.choice(_SAMPLE["payments"]))
        body["payment_number"] = f"{random.getrandbits(64):016x}"
        self.client.post(
            f"/v1/customer/predict?as_of={_SAMPLE['as_of']}",
            json=body,
            headers=_HEADERS,
            name="POST /v1/customer/predict",
        )
