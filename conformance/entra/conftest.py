"""Fixtures for the Entra emulator conformance tests: the running emulator's info and Graph helpers."""
import datetime
import json
import os
import uuid

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


@pytest.fixture(scope="session")
def info():
    with open(os.environ["ENTRA_EMULATOR_INFO"]) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def ca(info):
    return info["caPemPath"]


@pytest.fixture(scope="session")
def host(info):
    return info["authorityHost"]


@pytest.fixture(scope="session")
def op(info):
    return info["operator"]


@pytest.fixture(scope="session")
def customer(info):
    return next(t for t in info["tenantIds"] if t != info["homeTenantId"])


class Graph:
    """Minimal Graph client (requests) used to set up what the real clients then exercise."""

    def __init__(self, host, ca, op):
        self.host, self.ca = host, ca
        r = requests.post(op["tokenEndpoint"], verify=ca, data={
            "grant_type": "client_credentials", "client_id": op["clientId"],
            "client_secret": op["clientSecret"], "scope": GRAPH_SCOPE})
        r.raise_for_status()
        self.headers = {"Authorization": "Bearer " + r.json()["access_token"]}

    def call(self, method, path, body=None, expect=None):
        r = requests.request(method, self.host + "/v1.0" + path, json=body,
                             headers=self.headers, verify=self.ca)
        if expect is not None:
            assert r.status_code == expect, r.text
        return r.json() if r.content else None

    def new_client_app(self, **props):
        """An application with a service principal in the home tenant."""
        app = self.call("POST", "/applications",
                        {"displayName": "conformance-" + uuid.uuid4().hex[:8], **props}, expect=201)
        sp = self.call("POST", "/servicePrincipals", {"appId": app["appId"]}, expect=201)
        return app, sp


@pytest.fixture(scope="session")
def graph(host, ca, op):
    return Graph(host, ca, op)


@pytest.fixture(scope="session")
def self_signed():
    """A fresh RSA key and self-signed certificate, as a customer would generate."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "conformance")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    der = cert.public_bytes(serialization.Encoding.DER)
    return {"key_pem": key_pem, "cert_pem": cert_pem, "der": der,
            "thumbprint": cert.fingerprint(hashes.SHA1()).hex().upper()}
