"""gunicorn settings for the mistake: start the master's elector in each worker."""

workers = 2
preload_app = True


def post_fork(server, worker):  # type: ignore[no-untyped-def]
    import prefork_mistake

    prefork_mistake.elector.start()  # raises ElectorStateError: created in the master
