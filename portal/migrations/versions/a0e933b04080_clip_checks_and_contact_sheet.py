"""clip checks and contact sheet

Revision ID: a0e933b04080
Revises: 0469389104f1
Create Date: 2026-12-02 16:37:33.730147

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a0e933b04080'
down_revision = '0469389104f1'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('clips', schema=None) as batch_op:
        batch_op.add_column(sa.Column('contact_sheet_key', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('checks', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('clips', schema=None) as batch_op:
        batch_op.drop_column('checks')
        batch_op.drop_column('contact_sheet_key')
