"""Chaos harness (issue 7): real worker processes on throwaway servers, a seeded workload,
faults on a seeded schedule, then a Jepsen-style check of the history and the final state.

- ``history``: what the clients did (invoke / ok / fail / info) and what the nemesis did;
- ``checker``: the verdicts, a pure function of the history and the final state;
- ``plans``: what the simulated shop, payment provider and carrier do with each order;
- ``cluster``: PostgreSQL, RabbitMQ, the TCP proxies and the worker processes;
- ``clients``: the workload (orders, the shop's reactions, stock changes, stock sampling);
- ``nemesis``: the fault catalogue and its seeded schedule;
- ``observe``: draining every queue and reading the final state;
- ``run``: one run end to end (``make chaos``; ``test_chaos_short.py`` in the suite).
- ``patroni``: the same on a 3-member Patroni cluster, the ``db-failover`` fault and its
  measurements (``make chaos-patroni``; ``test_patroni_short.py`` in the suite).
"""
