"""``reelflow-admin``: tenants, API keys and dead letters, for the people who run reelflow.

Shipped in every service image with ``reelflow-common``; it reads the same
``REELFLOW_*`` settings as the services.
"""
