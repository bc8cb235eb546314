"""a take recorded along the guide on the campaign page: its timing as the browser measured
it, and how far the sound found it from that

Revision ID: f16a7c0d1e2b
Revises: f3a1b2c4d5e6 (integration: chained after the render tiles; was e17a50d1c0a1)
Create Date: 2026-12-03 14:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'f16a7c0d1e2b'
down_revision = 'f3a1b2c4d5e6'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('clips', schema=None) as batch_op:
        batch_op.add_column(sa.Column('record_timing', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('record_error_ms', sa.Float(), nullable=True))


def downgrade():
    with op.batch_alter_table('clips', schema=None) as batch_op:
        batch_op.drop_column('record_error_ms')
        batch_op.drop_column('record_timing')
