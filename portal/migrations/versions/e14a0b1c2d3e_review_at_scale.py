"""review at scale: part targets, a campaign's longest clip, an index for review pages

Revision ID: e14a0b1c2d3e
Revises: c7d1e2f3a4b5
Create Date: 2026-12-03 08:00:00.000000

``parts.target_count`` is how many performers a part is meant to have (the parts
roster shows coverage against it); ``campaigns.max_clip_seconds`` refuses longer
takes at intake; ``clips.warning_count`` (kept from ``checks``) lets the review list
filter on warnings without reading JSON. The indexes serve the review list's
filtered, paged queries and its counts per status and part from the index alone.
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
    with op.batch_alter_table('clips', schema=None) as batch_op:
        batch_op.add_column(sa.Column('warning_count', sa.Integer(), nullable=False,
                                      server_default='0'))
    conn = op.get_bind()
    clips = sa.table('clips', sa.column('id', sa.Integer), sa.column('checks', sa.JSON),
                     sa.column('warning_count', sa.Integer))
    for clip_id, checks in conn.execute(sa.select(clips.c.id, clips.c.checks)
                                        .where(clips.c.checks.is_not(None))).fetchall():
        warnings = sum(1 for c in checks or () if isinstance(c, dict)
                       and c.get('severity') == 'warning')
        if warnings:
            conn.execute(clips.update().where(clips.c.id == clip_id)
                         .values(warning_count=warnings))
    op.create_index('ix_clips_campaign_status_id', 'clips', ['campaign_id', 'status', 'id'])
    op.create_index('ix_clips_campaign_part_status', 'clips',
                    ['campaign_id', 'part_id', 'status'])
    op.create_index('ix_clips_campaign_warnings_id', 'clips',
                    ['campaign_id', 'warning_count', 'id'])
    op.create_index('ix_clip_events_status_at', 'clip_events', ['status', 'at'])


def downgrade():
    op.drop_index('ix_clip_events_status_at', table_name='clip_events')
    op.drop_index('ix_clips_campaign_warnings_id', table_name='clips')
    op.drop_index('ix_clips_campaign_part_status', table_name='clips')
    op.drop_index('ix_clips_campaign_status_id', table_name='clips')
    with op.batch_alter_table('clips', schema=None) as batch_op:
        batch_op.drop_column('warning_count')
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_column('max_clip_seconds')
    with op.batch_alter_table('parts', schema=None) as batch_op:
        batch_op.drop_column('target_count')
