"""clip media id: media URLs name a clip by a random id, never by its status token

Revision ID: c7d1e2f3a4b5
Revises: a0e933b04080
Create Date: 2026-12-02 18:30:00.000000

Existing clips get a fresh random ``media_id``; their files stay where they are
(under the token) and are served through the media id route by their stored keys.
"""
import secrets

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'c7d1e2f3a4b5'
down_revision = 'a0e933b04080'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('clips', schema=None) as batch_op:
        batch_op.add_column(sa.Column('media_id', sa.String(length=40), nullable=True))
    conn = op.get_bind()
    clips = sa.table('clips', sa.column('id', sa.Integer), sa.column('media_id', sa.String))
    for (clip_id,) in conn.execute(sa.select(clips.c.id)).fetchall():
        conn.execute(clips.update().where(clips.c.id == clip_id)
                     .values(media_id=secrets.token_urlsafe(16)))
    with op.batch_alter_table('clips', schema=None) as batch_op:
        batch_op.alter_column('media_id', existing_type=sa.String(length=40), nullable=False)
        batch_op.create_unique_constraint('uq_clips_media_id', ['media_id'])


def downgrade():
    with op.batch_alter_table('clips', schema=None) as batch_op:
        batch_op.drop_constraint('uq_clips_media_id', type_='unique')
        batch_op.drop_column('media_id')
