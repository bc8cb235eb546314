"""render tiles: where each clip is on screen in a finished render; review list orders

Revision ID: f3a1b2c4d5e6
Revises: f18c0a5e1ce0
Create Date: 2026-12-03 14:00:00.000000

One row per span of a clip on screen (its rectangle on the canvas, from when to when,
and when its own pictures start playing there), written when a render finishes. The
watch page's "find yourself" jumps to that moment and outlines the tile over the
player, reading only the rows of the performers it shows. Two expression indexes
serve the review list's sorted orders (and one its sync filters' counts) (lowest sync confidence first, name) a page at
a time instead of sorting every matching clip.
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'f3a1b2c4d5e6'
down_revision = 'f18c0a5e1ce0'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'render_tiles',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('render_id', sa.Integer(), nullable=False),
        sa.Column('clip_id', sa.Integer(), nullable=False),
        sa.Column('x', sa.Integer(), nullable=False),
        sa.Column('y', sa.Integer(), nullable=False),
        sa.Column('w', sa.Integer(), nullable=False),
        sa.Column('h', sa.Integer(), nullable=False),
        sa.Column('start', sa.Float(), nullable=False),
        sa.Column('end', sa.Float(), nullable=False),
        sa.Column('live', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['clip_id'], ['clips.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['render_id'], ['renders.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_render_tiles_render_clip', 'render_tiles', ['render_id', 'clip_id'])
    op.create_index('ix_render_tiles_clip_id', 'render_tiles', ['clip_id'])
    op.create_index('ix_clips_campaign_confidence', 'clips',
                    ['campaign_id', sa.text('coalesce(sync_confidence, 2.0)'), 'id'])
    op.create_index('ix_clips_campaign_name', 'clips',
                    ['campaign_id', sa.text('lower(display_name)'), 'id'])
    op.create_index('ix_clips_campaign_status_sync', 'clips',
                    ['campaign_id', 'status', 'sync_confidence', 'sync_state'])


def downgrade():
    op.drop_index('ix_clips_campaign_status_sync', table_name='clips')
    op.drop_index('ix_clips_campaign_name', table_name='clips')
    op.drop_index('ix_clips_campaign_confidence', table_name='clips')
    op.drop_index('ix_render_tiles_clip_id', table_name='render_tiles')
    op.drop_index('ix_render_tiles_render_clip', table_name='render_tiles')
    op.drop_table('render_tiles')
