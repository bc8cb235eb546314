"""render tiles: where each clip is on screen in a finished render

Revision ID: f3a1b2c4d5e6
Revises: e17a50d1c0a1
Create Date: 2026-12-03 14:00:00.000000

One row per span of a clip on screen (its rectangle on the canvas, from when to when,
and when its own pictures start playing there), written when a render finishes. The
watch page's "find yourself" jumps to that moment and outlines the tile over the
player, reading only the rows of the performers it shows.
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'f3a1b2c4d5e6'
down_revision = 'e17a50d1c0a1'
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


def downgrade():
    op.drop_index('ix_render_tiles_clip_id', table_name='render_tiles')
    op.drop_index('ix_render_tiles_render_clip', table_name='render_tiles')
    op.drop_table('render_tiles')
