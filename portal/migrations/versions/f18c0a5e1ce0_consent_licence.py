"""the licence text a participant consented to, kept with their clip

Revision ID: f18c0a5e1ce0
Revises: e17a50d1c0a1
Create Date: 2026-12-03 14:20:00.000000

The contributors' CSV printed the campaign's current licence for every row, so changing
the licence rewrote older consents. Clips from before this migration get the licence the
campaign has now: the best that is known of what they agreed to.
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'f18c0a5e1ce0'
down_revision = 'e17a50d1c0a1'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('clips', schema=None) as batch_op:
        batch_op.add_column(sa.Column('consent_licence', sa.Text(), nullable=True))
    op.execute("UPDATE clips SET consent_licence = (SELECT campaigns.licence FROM campaigns "
               "WHERE campaigns.id = clips.campaign_id)")


def downgrade():
    with op.batch_alter_table('clips', schema=None) as batch_op:
        batch_op.drop_column('consent_licence')
