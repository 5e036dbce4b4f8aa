"""webinar-proxy: an outbound SMTP relay that gives calendar invitations a Webinar conference."""

__version__ = "0.1.0"
