"""The operator's dashboard: a JSON API and one self-refreshing page over the store (``scalpbot serve``).

:func:`scalpbot.dashboard.app.build_app` builds the web app (Starlette, imported only then);
:mod:`scalpbot.dashboard.queries` reads what it shows from the store.
"""
