"""Real third-party clients against the Entra emulator: MSAL, azure-identity, PyJWT, msgraph SDK."""
import asyncio
import base64
import datetime
import ssl

import httpx
import jwt
import msal
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CertificateCredential, ClientAssertionCredential, ClientSecretCredential

from conftest import GRAPH_SCOPE


def msal_app(host, ca, tenant, client_id, credential):
    return msal.ConfidentialClientApplication(
        client_id, client_credential=credential, authority=f"{host}/{tenant}",
        verify=ca, instance_discovery=False, validate_authority=False)


def test_msal_client_secret(host, ca, op):
    app = msal_app(host, ca, op["tenantId"], op["clientId"], op["clientSecret"])
    result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert "access_token" in result, result
    assert result["token_type"] == "Bearer"
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["tid"] == op["tenantId"]
    assert claims["appid"] == op["clientId"]


def test_msal_certificate_from_a_fresh_cert(host, ca, graph, self_signed):
    app, _ = graph.new_client_app()
    graph.call("PATCH", f"/applications/{app['id']}", {"keyCredentials": [{
        "type": "AsymmetricX509Cert", "usage": "Verify",
        "key": base64.b64encode(self_signed["der"]).decode()}]}, expect=204)
    tenant = graph_tenant(graph)
    client = msal_app(host, ca, tenant, app["appId"], {
        "private_key": self_signed["key_pem"], "thumbprint": self_signed["thumbprint"]})
    result = client.acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert "access_token" in result, result
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["appid"] == app["appId"] and claims["appidacr"] == "2"


def test_msal_operator_certificate(host, ca, op):
    thumb = x509_thumbprint(op["certificatePem"])
    app = msal_app(host, ca, op["tenantId"], op["clientId"],
                   {"private_key": op["privateKeyPem"], "thumbprint": thumb})
    result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert "access_token" in result, result


def test_msal_wrong_secret_reports_7000215(host, ca, op):
    app = msal_app(host, ca, op["tenantId"], op["clientId"], "not-the-secret")
    result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert result.get("error") == "invalid_client", result
    assert 7000215 in result["error_codes"]
    assert result["error_description"].startswith("AADSTS7000215:")


def test_msal_expired_secret_reports_7000222(host, ca, graph):
    app, _ = graph.new_client_app()
    pw = graph.call("POST", f"/applications/{app['id']}/addPassword", {"passwordCredential": {
        "startDateTime": "2021-01-01T00:00:00Z", "endDateTime": "2021-03-01T00:00:00Z"}}, expect=200)
    client = msal_app(host, ca, graph_tenant(graph), app["appId"], pw["secretText"])
    result = client.acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert result.get("error") == "invalid_client", result
    assert 7000222 in result["error_codes"]


def test_msal_unknown_tenant_and_unconsented_tenant(host, ca, op, customer):
    app = msal_app(host, ca, customer, op["clientId"], op["clientSecret"])
    result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert 700016 in result.get("error_codes", []), result
    with pytest.raises(ValueError):
        # MSAL reads the tenant's discovery document first; an unknown tenant fails there.
        msal_app(host, ca, "nobody.onmicrosoft.com", op["clientId"], op["clientSecret"]) \
            .acquire_token_for_client(scopes=[GRAPH_SCOPE])


def test_azure_identity_secret_and_certificate(host, ca, op):
    cred = ClientSecretCredential(op["tenantId"], op["clientId"], op["clientSecret"],
                                  authority=host, connection_verify=ca,
                                  disable_instance_discovery=True)
    token = cred.get_token(GRAPH_SCOPE)
    assert jwt.decode(token.token, options={"verify_signature": False})["tid"] == op["tenantId"]
    assert token.expires_on > datetime.datetime.now().timestamp() + 3000

    pem = (op["privateKeyPem"] + op["certificatePem"]).encode()
    cert_cred = CertificateCredential(op["tenantId"], op["clientId"], certificate_data=pem,
                                            authority=host, connection_verify=ca,
                                            disable_instance_discovery=True)
    assert cert_cred.get_token(GRAPH_SCOPE).token

    bad = ClientSecretCredential(op["tenantId"], op["clientId"], "wrong", authority=host,
                                 connection_verify=ca, disable_instance_discovery=True)
    with pytest.raises(ClientAuthenticationError) as err:
        bad.get_token(GRAPH_SCOPE)
    assert "AADSTS7000215" in str(err.value)


def test_azure_identity_federated_assertion(host, ca, graph):
    app, _ = graph.new_client_app()
    graph.call("POST", f"/applications/{app['id']}/federatedIdentityCredentials", {
        "name": "kube-sa", "issuer": "https://kube.example", "subject": "system:serviceaccount:ns:op",
        "audiences": ["api://AzureADTokenExchange"]}, expect=201)

    def assertion(subject):
        now = int(datetime.datetime.now().timestamp())
        return lambda: jwt.encode({"iss": "https://kube.example", "sub": subject,
                                   "aud": "api://AzureADTokenExchange", "iat": now, "exp": now + 600},
                                  "k" * 32, algorithm="HS256")

    tenant = graph_tenant(graph)
    good = ClientAssertionCredential(tenant, app["appId"], assertion("system:serviceaccount:ns:op"),
                                     authority=host, connection_verify=ca,
                                     disable_instance_discovery=True)
    assert good.get_token(GRAPH_SCOPE).token
    bad = ClientAssertionCredential(tenant, app["appId"], assertion("system:serviceaccount:ns:other"),
                                    authority=host, connection_verify=ca,
                                    disable_instance_discovery=True)
    with pytest.raises(ClientAuthenticationError) as err:
        bad.get_token(GRAPH_SCOPE)
    assert "AADSTS700213" in str(err.value)


def test_pyjwt_verifies_tokens_against_jwks(host, ca, graph):
    # A v2 API with an app role, and a client granted that role.
    role_id = "3f1a2b3c-0000-4000-8000-00000000c0de"
    api, api_sp = graph.new_client_app(
        appRoles=[{"id": role_id, "value": "System", "displayName": "System", "description": "s",
                   "isEnabled": True, "allowedMemberTypes": ["Application"]}],
        api={"requestedAccessTokenVersion": 2})
    graph.call("PATCH", f"/applications/{api['id']}",
               {"identifierUris": [f"api://{api['appId']}"]}, expect=204)
    client, client_sp = graph.new_client_app()
    graph.call("POST", f"/servicePrincipals/{api_sp['id']}/appRoleAssignedTo", {
        "principalId": client_sp["id"], "resourceId": api_sp["id"], "appRoleId": role_id}, expect=201)
    secret = graph.call("POST", f"/applications/{client['id']}/addPassword", {}, expect=200)["secretText"]
    tenant = graph_tenant(graph)
    result = msal_app(host, ca, tenant, client["appId"], secret) \
        .acquire_token_for_client(scopes=[f"api://{api['appId']}/.default"])
    assert "access_token" in result, result

    config = httpx.get(f"{host}/{tenant}/v2.0/.well-known/openid-configuration", verify=ca).json()
    jwks = jwt.PyJWKClient(config["jwks_uri"], ssl_context=ssl.create_default_context(cafile=ca))
    key = jwks.get_signing_key_from_jwt(result["access_token"])
    claims = jwt.decode(result["access_token"], key.key, algorithms=["RS256"],
                        audience=api["appId"], issuer=config["issuer"])
    assert claims["tid"] == tenant
    assert claims["azp"] == client["appId"]
    assert claims["roles"] == ["System"]
    assert claims["ver"] == "2.0"
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(result["access_token"], key.key, algorithms=["RS256"], audience="someone-else",
                   issuer=config["issuer"])
    tampered = result["access_token"][:-4] + ("AAAA" if not result["access_token"].endswith("AAAA") else "BBBB")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(tampered, key.key, algorithms=["RS256"], audience=api["appId"])


def test_msgraph_sdk_creates_app_adds_password_lists_service_principals(host, ca, op):
    from azure.identity.aio import ClientSecretCredential as AsyncSecretCredential
    from kiota_authentication_azure.azure_identity_authentication_provider import \
        AzureIdentityAuthenticationProvider
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.applications.item.add_password.add_password_post_request_body import \
        AddPasswordPostRequestBody
    from msgraph.generated.models.application import Application
    from msgraph.generated.models.password_credential import PasswordCredential
    from msgraph_core import GraphClientFactory

    async def run():
        cred = AsyncSecretCredential(op["tenantId"], op["clientId"], op["clientSecret"],
                                     authority=host, connection_verify=ca,
                                     disable_instance_discovery=True)
        auth = AzureIdentityAuthenticationProvider(cred, scopes=[GRAPH_SCOPE],
                                                   allowed_hosts=["127.0.0.1"])
        http = GraphClientFactory.create_with_default_middleware(
            client=httpx.AsyncClient(verify=ca, base_url=f"{host}/v1.0"))
        adapter = GraphRequestAdapter(auth, client=http)
        adapter.base_url = f"{host}/v1.0"
        client = GraphServiceClient(request_adapter=adapter)
        try:
            app = await client.applications.post(Application(display_name="made-by-msgraph-sdk"))
            assert app.id and app.app_id
            pw = await client.applications.by_application_id(app.id).add_password.post(
                AddPasswordPostRequestBody(password_credential=PasswordCredential(display_name="sdk")))
            assert pw.secret_text and pw.hint == pw.secret_text[:3]
            got = await client.applications.by_application_id(app.id).get()
            assert got.display_name == "made-by-msgraph-sdk"
            assert got.password_credentials[0].secret_text is None
            sps = await client.service_principals.get()
            app_ids = [sp.app_id for sp in sps.value]
            assert "00000003-0000-0000-c000-000000000000" in app_ids
            assert op["clientId"] in app_ids
        finally:
            await cred.close()
            await http.aclose()

    asyncio.run(run())


def graph_tenant(graph):
    token = graph.headers["Authorization"].split()[1]
    return jwt.decode(token, options={"verify_signature": False})["tid"]


def x509_thumbprint(cert_pem):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    return cert.fingerprint(hashes.SHA1()).hex().upper()
