"""Test fakes that ship with the product: the fake Webinar platform and its HTTP server.

Tests, the ``demo`` command and the ``fake-webinar`` command share them; the
product's own code paths (``serve``) never import this package.
"""
