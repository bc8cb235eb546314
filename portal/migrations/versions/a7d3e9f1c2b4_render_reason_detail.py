"""a failed render's technical detail (ffmpeg's last words), kept apart from the reason the
organizer reads

Revision ID: a7d3e9f1c2b4
Revises: f16a7c0d1e2b
Create Date: 2026-12-04 17:10:00.000000
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'a7d3e9f1c2b4'
down_revision = 'f16a7c0d1e2b'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('renders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason_detail', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('renders', schema=None) as batch_op:
        batch_op.drop_column('reason_detail')
