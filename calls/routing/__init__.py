"""The routing engine: who of a queue's free operators is offered which waiting call."""
