"""The milter front door (Postfix ``smtpd_milters``, Sendmail ``INPUT_MAIL_FILTER``).

The only package that imports the milter protocol library (``kilter.protocol``).
"""
