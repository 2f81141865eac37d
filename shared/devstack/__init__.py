"""Throwaway services for tests and `make demo`: real PostgreSQL and a real MQTT broker.

Not used by the edge agent or the collector at run time.
"""

from shared.devstack.broker import AmqttBroker, Broker, MosquittoBroker, start_broker
from shared.devstack.postgres import ExternalPostgres, ThrowawayPostgres

__all__ = ["AmqttBroker", "Broker", "ExternalPostgres", "MosquittoBroker", "ThrowawayPostgres", "start_broker"]
