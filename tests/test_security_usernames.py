"""Usernames that cannot pass for someone else's (issue 13, finding 9, usernames)."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from chatapp.usernames import confusable

from .factories import PASSWORD, user_create

User = get_user_model()


def signup_post(username: str):
    return Client().post(
        "/signup/", {"username": username, "password1": PASSWORD, "password2": PASSWORD}
    )


def refused_with(response, text: str) -> bool:
    return response.status_code == 200 and text in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("existing", "look_alike"),
    [
        ("bob", "b\u043eb"),  # Cyrillic o
        ("admin", "\u0430dmin"),  # Cyrillic a
        ("admin", "\u0410DMIN"),  # Cyrillic capital A, and case
        ("paypal", "p\u0430yp\u0430l"),
        ("bill", "biII"),  # Latin capital I for l
        ("bo0", "boo"),  # digit zero for o
        ("root", "r\u03bf\u03bft"),  # Greek omicron
    ],
)
def test_a_username_that_looks_like_an_existing_one_is_refused(existing, look_alike):
    user_create(existing)
    response = signup_post(look_alike)
    assert refused_with(response, "too similar to an existing one"), response.content[:300]
    assert not User.objects.filter(username=look_alike).exists()


@pytest.mark.django_db
def test_a_username_differing_only_in_case_is_refused_as_taken():
    user_create("Bob")
    assert refused_with(signup_post("bob"), "already exists")


@pytest.mark.django_db
def test_a_distinct_username_is_accepted():
    user_create("bob")
    assert signup_post("bobby").status_code == 302
    assert signup_post("rob").status_code == 302


@pytest.mark.django_db
def test_usernames_are_normalised_nfkc_before_the_checks():
    """Fullwidth letters are NFKC-equal to ASCII: the stored name is the normal form."""
    assert signup_post("\uff41\uff4c\uff49\uff43\uff45").status_code == 302  # fullwidth alice
    assert User.objects.filter(username="alice").exists()
    user_create("bob")
    assert signup_post("\uff42\uff4f\uff42").status_code == 200
    assert User.objects.count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    "username",
    [
        "bob\u3164",  # Hangul filler: a letter that renders as nothing
        "b\u115fob",  # Hangul choseong filler
        "b\u200bob",  # zero-width space
        "bob\u202e",  # right-to-left override
        "bo\u0085b",  # C1 control (next line; stripped at either end)
        "bo\x07b",  # C0 control
        "bob\ufeff",  # zero-width no-break space
        "b\u034fob",  # combining grapheme joiner
    ],
)
def test_a_username_with_an_invisible_or_control_character_is_refused(username):
    response = signup_post(username)
    assert response.status_code == 200
    assert not User.objects.filter(username=username).exists()
    assert User.objects.count() == 0


@pytest.mark.django_db
def test_the_hangul_filler_gets_the_invisible_message():
    """Django's own pattern lets this letter through: ours names the reason."""
    assert refused_with(signup_post("bob\u3164"), "invisible, spacing or control characters")


@pytest.mark.django_db
def test_the_admin_add_user_form_refuses_look_alikes_too():
    staff = User.objects.create_superuser("root", password=PASSWORD)
    user_create("bob")
    client = Client()
    client.force_login(staff)
    response = client.post(
        "/admin/auth/user/add/",
        {
            "username": "b\u043eb",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "usable_password": "true",
        },
    )
    assert response.status_code == 200
    assert "too similar to an existing one" in response.content.decode()
    assert not User.objects.filter(username="b\u043eb").exists()


def test_look_alikes_are_confusable_and_distinct_names_are_not():
    assert confusable("b\u043eb", "bob")
    assert confusable("BOB", "bob")
    assert confusable("l1I|", "llll")
    assert not confusable("alice", "alike")
    assert not confusable("tom", "yom")
    assert not confusable("ali", "all")
