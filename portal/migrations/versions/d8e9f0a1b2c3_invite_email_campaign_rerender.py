"""campaign_invites.email (an invite for one organizer's address) and
campaigns.rerender_reason (why the published mash-up must be rendered again)

Revision ID: d8e9f0a1b2c3
Revises: e14a0b1c2d3e (re-chained on integrate after issue14's migration)
Create Date: 2026-12-03 08:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd8e9f0a1b2c3'
down_revision = 'e14a0b1c2d3e'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('campaign_invites', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email', sa.String(length=254), nullable=True))
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rerender_reason', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_column('rerender_reason')
    with op.batch_alter_table('campaign_invites', schema=None) as batch_op:
        batch_op.drop_column('email')
