"""Flask CLI commands: demo seeding, users, API tokens, the periodic tick."""
from __future__ import annotations

import click

from .extensions import db


def register_cli(app) -> None:
    @app.cli.command("seed-demo")
    @click.option("--customers", default=50, show_default=True)
    def seed_demo_cmd(customers: int):
        """Create the demo clinic, users, customers and invoices (idempotent)."""
        from .demo import seed_demo
        info = seed_demo(customers=customers)
        for k, v in info.items():
            click.echo(f"{k}: {v}")

    @app.cli.command("create-user")
    @click.argument("email")
    @click.argument("role", type=click.Choice(["owner", "support"]))
    @click.option("--clinic-id", type=int)
    @click.password_option()
    def create_user(email, role, clinic_id, password):
        """Create a user (owners need --clinic-id)."""
        from .models import User
        if role == "owner" and not clinic_id:
            raise click.UsageError("owners belong to a clinic: pass --clinic-id")
        u = User(email=email.lower(), role=role, clinic_id=clinic_id if role == "owner" else None)
        u.set_password(password)
        db.session.add(u)
        db.session.commit()
        click.echo(f"created {role} {email}")

    @app.cli.command("issue-token")
    @click.argument("clinic_id", type=int)
    def issue_token(clinic_id):
        """Issue an API token for TecPet core to post a clinic's events (shown once)."""
        from .models import ApiToken
        row, token = ApiToken.issue(clinic_id)
        db.session.add(row)
        db.session.commit()
        click.echo(token)

    @app.cli.command("tick")
    def tick_cmd():
        """Dispatch the outbox, sweep lost runs and schedule pulls once."""
        from .sync.jobs import tick
        click.echo(tick())
