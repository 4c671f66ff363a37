from django import forms

from .models import Room


class RoomForm(forms.Form):
    """The one-field form that creates a room."""

    name = forms.CharField(max_length=80, strip=True)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if Room.objects.filter(name__iexact=name).exists():
            raise forms.ValidationError("A room with this name already exists.")
        return name
