"""Named actions a rule's `then:` can call, each with a pydantic parameter model."""
