"""The Label Studio ML backend: pre-annotations from each project's production model.

``ml_backend.app.create_app(settings)`` builds the Flask app; ``ml_backend.wsgi:app`` is the gunicorn
entry point; ``histoloop serve`` runs it.
"""
