"""``advlab serve``: an offline web demo that attacks small MNIST models in the browser.

* :mod:`advlab.serve.models`: the demo model zoo (trained at first start, then cached), built
  from :mod:`advlab.serve.specs` (budgets, specs) and :mod:`advlab.serve.zoo` (the entries).
* :mod:`advlab.serve.attacks`: the attack menu and how eps/steps map onto each attack.
* :mod:`advlab.serve.app`: ``create_app(models, data)``, the FastAPI application (page + API).

Importing this package imports nothing else; :mod:`advlab.serve.app` needs the ``serve``
extra (FastAPI, uvicorn): ``pip install 'advlab[serve]'``.
"""
