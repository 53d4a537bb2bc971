#!/usr/bin/env bash
# Makes the lab cluster's certificates, keys and kubeconfigs with openssl:
#
#   kube-pki.sh DIR APISERVER_IP SERVICE_IP HOST...
#
#   DIR/ca.{crt,key}                 the cluster CA (also the client CA)
#   DIR/apiserver.{crt,key}          serving: kubernetes.default.svc..., the
#                                    apiserver's underlay IP, the Service IP
#   DIR/apiserver-kubelet-client.*   the apiserver's identity towards kubelets
#   DIR/sa.{key,pub}                 service-account token signing keys
#   DIR/admin.kubeconfig             kubernetes-admin, group system:masters
#   DIR/controller-manager.kubeconfig  system:kube-controller-manager
#   DIR/scheduler.kubeconfig         system:kube-scheduler
#   DIR/kube-proxy.kubeconfig        system:kube-proxy
#   DIR/HOST.kubeconfig              system:node:HOST, group system:nodes
#                                    (the Node authorizer's identity)
#
# Keys are RSA 2048, certificates valid for 30 days: a lab lives for minutes.
set -euo pipefail
dir=$1 apiserver_ip=$2 service_ip=$3
shift 3
mkdir -p "$dir"
cd "$dir"
umask 077

openssl genrsa -out ca.key 2048 2>/dev/null
openssl req -x509 -new -key ca.key -sha256 -days 30 -subj "/CN=romana-lab-ca" -out ca.crt 2>/dev/null

# sign NAME SUBJECT [EXTENSIONS]
sign() {
  local name=$1 subject=$2 extensions=${3:-}
  openssl genrsa -out "$name.key" 2048 2>/dev/null
  openssl req -new -key "$name.key" -subj "$subject" -out "$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [[ -n $extensions ]]; then
      echo "extendedKeyUsage=serverAuth"
      echo "subjectAltName=$extensions"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -sha256 \
    -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

sign apiserver "/CN=kube-apiserver" \
  "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:$apiserver_ip,IP:$service_ip,IP:127.0.0.1"
sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null

# kubeconfig NAME SUBJECT: a client certificate and a kubeconfig using it.
kubeconfig() {
  local name=$1 subject=$2
  sign "$name" "$subject"
  cat > "$name.kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: https://$apiserver_ip:6443
    certificate-authority-data: $(base64 -w0 ca.crt)
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 "$name.crt")
    client-key-data: $(base64 -w0 "$name.key")
contexts:
- name: lab
  context: {cluster: lab, user: $name}
current-context: lab
KUBECONFIG
}

kubeconfig admin "/O=system:masters/CN=kubernetes-admin"
kubeconfig controller-manager "/CN=system:kube-controller-manager"
kubeconfig scheduler "/CN=system:kube-scheduler"
kubeconfig kube-proxy "/CN=system:kube-proxy"
for host in "$@"; do
  kubeconfig "$host" "/O=system:nodes/CN=system:node:$host"
done
rm -f ca.srl
chmod 644 ca.crt
