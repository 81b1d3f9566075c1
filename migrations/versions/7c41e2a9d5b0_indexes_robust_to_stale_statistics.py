"""indexes that keep a step's searches cheap when the planner's statistics are stale

customers: (clinic_id) becomes (clinic_id, id), so `clinic_id = ? AND id IN (...)` can be searched on
both columns. bindings: the unique key and ix_bindings_remote lead with the id they are searched by
(local_id, remote_id), so neither offers the planner an (integration_id, entity) range to scan and
filter, the plan it chose for a step's `local_id IN (...)` while a new integration's bindings were
newer than the table's statistics.

Revision ID: 7c41e2a9d5b0
Revises: 2d38fbaecda4
Create Date: 2026-11-26 03:40:00

"""
from alembic import op


revision = '7c41e2a9d5b0'
down_revision = '2d38fbaecda4'
branch_labels = None
depends_on = None

CONVENTION = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _old_unique_name() -> str:
    if op.get_bind().dialect.name == "postgresql":
        return 'bindings_integration_id_entity_local_id_key'
    return 'uq_bindings_integration_id'


def upgrade():
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.create_index('ix_customers_clinic', ['clinic_id', 'id'], unique=False)
        batch_op.drop_index('ix_customers_clinic_id')
    # the initial schema left the unique key unnamed: PostgreSQL named it, SQLite did not (batch
    # mode rebuilds the table and names it through the convention)
    with op.batch_alter_table('bindings', schema=None, naming_convention=CONVENTION) as batch_op:
        batch_op.drop_constraint(_old_unique_name(), type_='unique')
        batch_op.create_unique_constraint('uq_bindings_local', ['local_id', 'integration_id', 'entity'])
        batch_op.drop_index('ix_bindings_remote')
        batch_op.create_index('ix_bindings_remote', ['remote_id', 'integration_id', 'entity'], unique=False)


def downgrade():
    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.drop_constraint('uq_bindings_local', type_='unique')
        batch_op.create_unique_constraint(_old_unique_name(), ['integration_id', 'entity', 'local_id'])
        batch_op.drop_index('ix_bindings_remote')
        batch_op.create_index('ix_bindings_remote', ['integration_id', 'entity', 'remote_id'], unique=False)
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.create_index('ix_customers_clinic_id', ['clinic_id'], unique=False)
        batch_op.drop_index('ix_customers_clinic')
