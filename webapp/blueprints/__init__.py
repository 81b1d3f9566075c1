"""One module per area; each is thin and calls plain modules for the logic."""


def register_blueprints(app) -> None:
    from . import api, auth, customers, dashboard, finance, history, integrations, jobs, support, webhooks
    for module in (auth, dashboard, integrations, customers, history, jobs, finance, support, api, webhooks):
        app.register_blueprint(module.bp)
