"""review at scale: part targets, a campaign's longest clip, an index for review pages

Revision ID: e14a0b1c2d3e
Revises: c7d1e2f3a4b5
Create Date: 2026-12-03 08:00:00.000000

``parts.target_count`` is how many performers a part is meant to have (the parts
roster shows coverage against it); ``campaigns.max_clip_seconds`` refuses longer
takes at intake. The (campaign_id, status, id) index serves the review list's
filtered, paged queries and its counts without reading every clip of a campaign.
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'e14a0b1c2d3e'
down_revision = 'c7d1e2f3a4b5'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('parts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('target_count', sa.Integer(), nullable=True))
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.add_column(sa.Column('max_clip_seconds', sa.Float(), nullable=True))
    op.create_index('ix_clips_campaign_status_id', 'clips', ['campaign_id', 'status', 'id'])


def downgrade():
    op.drop_index('ix_clips_campaign_status_id', table_name='clips')
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_column('max_clip_seconds')
    with op.batch_alter_table('parts', schema=None) as batch_op:
        batch_op.drop_column('target_count')
