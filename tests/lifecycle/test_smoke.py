from tests.support.product import corpus, running_product, with_header


async def test_thunderbird_request_gets_a_conference(tmp_path):
    invite = with_header(corpus("thunderbird__single-event.eml"), b"X-Webinar-Conference: yes")
    async with running_product(tmp_path) as product:
        code, text = await product.send(invite, "sender@example.com", ["receiver@example.com"])
        assert code == 250, text
        state = product.state()
    print(state)
    assert len(state["events"]) == 1
    link = state["events"][0]["link"]
    assert link.encode() in product.delivered()[0]
