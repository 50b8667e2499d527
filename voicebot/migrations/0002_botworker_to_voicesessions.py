"""BotWorker moves to voicesessions (the web side dispatches bots and must find workers).

State only: the table `voicebot_botworker` and its rows stay where they are;
voicesessions.0006 takes the model over under the same table name.
"""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("voicebot", "0001_initial"),
        ("voicesessions", "0006_botworker_from_voicebot"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="BotWorker")],
                                            database_operations=[]),
    ]
