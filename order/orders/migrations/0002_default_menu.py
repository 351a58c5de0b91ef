"""The default café menu. Prices are integer yen."""

from django.db import migrations

DEFAULT_MENU = [
    ("Espresso", "drink", 350),
    ("Café Latte", "drink", 480),
    ("Matcha Latte", "drink", 520),
    ("Iced Tea", "drink", 380),
    ("Croissant", "food", 300),
    ("Ham & Cheese Sandwich", "food", 650),
    ("Blueberry Muffin", "food", 350),
    ("Cheesecake", "food", 550),
]


def load_menu(apps, schema_editor):
    MenuItem = apps.get_model("orders", "MenuItem")
    for name, kind, price in DEFAULT_MENU:
        MenuItem.objects.get_or_create(name=name, defaults={"kind": kind, "price": price})


def unload_menu(apps, schema_editor):
    MenuItem = apps.get_model("orders", "MenuItem")
    MenuItem.objects.filter(name__in=[name for name, _, _ in DEFAULT_MENU]).delete()


class Migration(migrations.Migration):
    dependencies = [("orders", "0001_initial")]
    operations = [migrations.RunPython(load_menu, unload_menu)]
