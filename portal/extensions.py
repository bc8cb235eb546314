"""Extension singletons, bound to an app by ``init_app`` in the factory."""

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login = LoginManager()
login.login_view = "organize.login"
login.login_message = "Please log in to manage campaigns."
csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address)  # storage and limits from the app's config
