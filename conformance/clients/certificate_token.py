"""Gets a token with a certificate Secret's data alone, the way its consumers would.

Reads JSON on stdin: {"data": {<the Secret's keys as strings>}, "ca": <CA PEM path to trust>,
"scope": ...}. Writes client.pem to a private temp file (as a mounted Secret would be) and tries
three real clients: azure-identity's CertificateCredential (certificate_path), azure-identity's
EnvironmentCredential (AZURE_CLIENT_CERTIFICATE_PATH), and MSAL's ConfidentialClientApplication
(private key and thumbprint). Prints {"<client>": "ok" | "<error>"} as JSON.
"""
import json
import os
import sys
import tempfile

import msal
from azure.identity import CertificateCredential, EnvironmentCredential


def main():
    req = json.load(sys.stdin)
    data, ca, scope = req["data"], req["ca"], req["scope"]
    tenant, client_id, host = data["AZURE_TENANT_ID"], data["AZURE_CLIENT_ID"], data["AZURE_AUTHORITY_HOST"]
    out = {}
    # requests lets REQUESTS_CA_BUNDLE override a session's `verify` (MSAL sets the session's).
    os.environ["REQUESTS_CA_BUNDLE"] = ca
    os.environ.pop("CURL_CA_BUNDLE", None)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "client.pem")
        with open(path, "w") as f:
            f.write(data["client.pem"])
        os.chmod(path, 0o600)

        def attempt(name, get):
            try:
                token = get()
                out[name] = "ok" if token else "empty token"
            except Exception as e:  # the message is what the test reports
                out[name] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"

        attempt("azure_identity_certificate", lambda: CertificateCredential(
            tenant, client_id, certificate_path=path, authority=host, connection_verify=ca,
            disable_instance_discovery=True).get_token(scope).token)

        os.environ.update({"AZURE_TENANT_ID": tenant, "AZURE_CLIENT_ID": client_id,
                           "AZURE_AUTHORITY_HOST": host, "AZURE_CLIENT_CERTIFICATE_PATH": path})
        os.environ.pop("AZURE_CLIENT_SECRET", None)
        attempt("azure_identity_environment", lambda: EnvironmentCredential(
            connection_verify=ca, disable_instance_discovery=True).get_token(scope).token)

        def with_msal():
            app = msal.ConfidentialClientApplication(
                client_id, authority=f"{host}/{tenant}", verify=ca, instance_discovery=False,
                validate_authority=False,
                client_credential={"private_key": data["tls.key"], "thumbprint": data["thumbprint"]})
            result = app.acquire_token_for_client(scopes=[scope])
            if "access_token" not in result:
                raise RuntimeError(result.get("error_description") or str(result))
            return result["access_token"]

        attempt("msal", with_msal)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
