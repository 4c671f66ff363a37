"""S4's clients and the seed's memberships: each S4 user chats in the one room it belongs to."""

from bench.scenarios import FULL, QUICK


def test_every_s4_client_is_a_member_of_the_room_it_chats_in_and_of_no_other():
    members = FULL.needs().members_per_room
    users = [FULL.s4_user(i) for i in range(FULL.s4_rooms * FULL.s4_room_size)]
    assert len(set(users)) == len(users)  # one socket per user
    assert max(users) < FULL.needs().users
    for i, user in enumerate(users):
        # The seed makes user u a member of room u // members_per_room (bench/seed.py), and
        # room_clients puts client i in room i // s4_room_size.
        assert user // members == i // FULL.s4_room_size


def test_a_smoke_test_seeded_with_fewer_rooms_keeps_client_i_as_user_i():
    assert [QUICK.s4_user(i) for i in range(8)] == list(range(8))
