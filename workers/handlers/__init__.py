"""Message handlers, one module per consumed message family: functions of a validated
message and a unit of work (``conveyor.db.uow``); they never touch pika or a connection."""
