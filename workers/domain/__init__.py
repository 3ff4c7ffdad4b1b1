"""Pure domain decisions: the reservation rule and the order state machine. No I/O."""
