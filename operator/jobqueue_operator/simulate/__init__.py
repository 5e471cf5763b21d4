"""``jobqueue simulate``: a JobQueue's scaling spec, offline, in a model of its queue and pods.

| module        | what it holds                                                                 |
| ------------- | ----------------------------------------------------------------------------- |
| ``model``     | the discrete-event model: arrivals, pods, claims, drains, polls               |
| ``traces``    | the seven synthetic shapes, job-time distributions, recorded traces           |
| ``autoscalers`` | ``policy.decide`` as the operator calls it, and KEDA + HPA with their defaults |
| ``report``    | a run's figures: seconds over target, waits, replicas, cost, reversals, ...   |
| ``scenario``  | one JobQueue on a cluster: its workloads and runs (the CLI's and the bench's) |
| ``chart``     | a terminal chart of a run                                                     |
| ``cli``       | the command                                                                   |

Everything but ``cli`` is pure: no I/O, no clock.
"""
