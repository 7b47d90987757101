"""A view that writes an order and enqueues its job in one Django transaction."""

from __future__ import annotations

from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse

from pgsched.contrib.django import enqueue
from tests.frameworks.django_project.tasks import ship_order


class Rejected(Exception):
    pass


def place_order(request: HttpRequest) -> JsonResponse:
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("INSERT INTO orders (item) VALUES (%s) RETURNING id", [request.POST["item"]])
                (order_id,) = cursor.fetchone()
            job_id = enqueue(ship_order, {"order_id": order_id})  # on Django's connection, in this transaction
            if request.POST.get("reject"):
                raise Rejected  # rolls back the order and its job
    except Rejected:
        return JsonResponse({"error": "rejected"}, status=409)
    return JsonResponse({"order": order_id, "job": job_id}, status=201)
