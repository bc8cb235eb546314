"""clip sound controls (level, loudness match, mute, hide, pan, clean-up), the take's
measured sound, time maps (a switch per clip, limits per campaign), and a render's
hand-off export

Revision ID: e17a50d1c0a1
Revises: d15e4a5e0b01 (integration: chained after issue15's migration; was c7d1e2f3a4b5)
Create Date: 2026-12-03 08:00:00.000000

Existing clips keep today's sound in a mix only in part: the loudness match and the
clean-up are on by default (what the organizer asked for); their measurements are
made at the next render that needs them.
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'e17a50d1c0a1'
down_revision = 'd15e4a5e0b01'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('clips', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sound_level_db', sa.Float(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('loudness_match', sa.Boolean(), nullable=False,
                                      server_default=sa.true()))
        batch_op.add_column(sa.Column('muted', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('hidden', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('pan', sa.Float(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('cleanup', sa.Boolean(), nullable=False,
                                      server_default=sa.true()))
        batch_op.add_column(sa.Column('sound', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('timing', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('time_map', sa.JSON(), nullable=True))
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.add_column(sa.Column('timing_max_shift_ms', sa.Integer(), nullable=False,
                                      server_default='80'))
        batch_op.add_column(sa.Column('timing_max_tempo_pct', sa.Float(), nullable=False,
                                      server_default='3'))
    with op.batch_alter_table('renders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('handoff_state', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('handoff_key', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('handoff_reason', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('renders', schema=None) as batch_op:
        batch_op.drop_column('handoff_reason')
        batch_op.drop_column('handoff_key')
        batch_op.drop_column('handoff_state')
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_column('timing_max_tempo_pct')
        batch_op.drop_column('timing_max_shift_ms')
    with op.batch_alter_table('clips', schema=None) as batch_op:
        batch_op.drop_column('time_map')
        batch_op.drop_column('timing')
        batch_op.drop_column('sound')
        batch_op.drop_column('cleanup')
        batch_op.drop_column('pan')
        batch_op.drop_column('hidden')
        batch_op.drop_column('muted')
        batch_op.drop_column('loudness_match')
        batch_op.drop_column('sound_level_db')
