"""Webhooks: jobs' ends and alert crossings announced over HTTP by ``farm scheduler``.

``outbox`` turns ``farm:events``' ``end`` entries and the crossings of the [alerts] thresholds
into deliveries kept in Redis; ``deliver`` POSTs the due ones (httpx) with retries and backoff,
logging every try; ``payloads`` shapes the JSON and Slack bodies. Nothing here runs on a
worker: a render never waits on a webhook, and a webhook that is down costs the farm nothing
but a delayed retry.
"""
