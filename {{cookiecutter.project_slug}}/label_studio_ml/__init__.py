"""Upstream's ``label_studio_ml`` SDK surface on this runtime, so an upstream ``model.py`` runs unchanged.

Optional (the ``upstream`` extra, ``requirements-upstream.txt``): the runtime never imports it; an
upstream ``model.py`` does, when ``MODEL_CLASS`` (default: the class in ``model.py``) names such a model.
The porting guide is docs/upstream.md.
"""
