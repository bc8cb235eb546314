"""lease owners, render parts with their own leases, render request keys

Revision ID: d15e4a5e0b01
Revises: d8e9f0a1b2c3 (integration: chained after issue14's and fix10b's migrations; was c7d1e2f3a4b5)
Create Date: 2026-12-03 08:00:00.000000

A lease now names its holder (one id per claim) and is short and renewed by a
heartbeat while the work runs; each part of a distributed render has its own lease;
a queued or running render keeps a digest of what was asked for (unique), so the same
render requested twice at once is one render.
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'd15e4a5e0b01'
down_revision = 'd8e9f0a1b2c3'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('clips', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_owner', sa.String(length=40), nullable=True))
    with op.batch_alter_table('renders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_owner', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('request_key', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint('uq_renders_request_key', ['request_key'])
    op.create_table(
        'render_parts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('render_id', sa.Integer(), nullable=False),
        sa.Column('part', sa.Integer(), nullable=False),
        sa.Column('lease_until', sa.DateTime(), nullable=True),
        sa.Column('lease_owner', sa.String(length=40), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['render_id'], ['renders.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('render_id', 'part'),
    )
    with op.batch_alter_table('render_parts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_render_parts_render_id'), ['render_id'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('render_parts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_render_parts_render_id'))
    op.drop_table('render_parts')
    with op.batch_alter_table('renders', schema=None) as batch_op:
        batch_op.drop_constraint('uq_renders_request_key', type_='unique')
        batch_op.drop_column('request_key')
        batch_op.drop_column('lease_owner')
    with op.batch_alter_table('clips', schema=None) as batch_op:
        batch_op.drop_column('lease_owner')
