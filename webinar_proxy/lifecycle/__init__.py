"""The conference lifecycle: joins the engine, the Webinar client and the store.

``InvitationPipeline`` (the SMTP edge's pipeline), ``ConferenceManager`` (platform
and store operations), ``decide`` (the invitation table) and ``Scheduler`` (work that
needs no mail: rolling recurring conferences forward, retrying deletes).
"""
