from django.urls import path

from leaderelect.django import get_elector
from leaderelect.health import django_view

urlpatterns = [path("leaderelect", django_view(get_elector))]
