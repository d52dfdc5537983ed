from django.db import connection
from django_tasks import task


@task()
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="mail", priority=10)
def record(order: int) -> int:
    with connection.cursor() as c:
        c.execute("INSERT INTO sent (order_id) VALUES (%s)", [order])
    return order


@task(takes_context=True)
def attempt(context, x: int) -> int:  # type: ignore[no-untyped-def]
    return int(context.attempt)


@task()
def broken() -> None:
    raise ValueError("broken task")
