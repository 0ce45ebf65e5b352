"""deploy/cloudformation.yaml: cfn-lint clean, and deployed into moto's CloudFormation (moto_server
in a subprocess) to check what the stack creates.

Checked on what moto creates (moto 5.2):
- ECS: the cluster; the four task definitions (family, container name, image, command, ports,
  environment, secrets, log configuration); the three services (cluster, task definition, desired
  count).
- IAM: the five roles, their trust policy and inline policies.
- ELBv2: the load balancer (scheme, subnets, security group), the target group and its health
  check, the listeners and, in a second stack with a certificate, HTTPS and the HTTP redirect rule.
- EC2 security groups and their ingress (including the rule added to the database's group),
  CloudWatch log groups and retention, the bucket's name and default encryption, the outputs.

Checked in the template only, because moto cannot model it:
- AWS::ECS::ClusterCapacityProviderAssociations and AWS::S3::BucketPolicy: unsupported; moto skips
  them with a warning and the stack still completes.
- AWS::S3::Bucket: CorsConfiguration, LifecycleConfiguration, PublicAccessBlockConfiguration and
  OwnershipControls are ignored (moto applies the name, encryption and tags only).
- AWS::ECS::TaskDefinition: RequiresCompatibilities, NetworkMode, Cpu, RuntimePlatform,
  EphemeralStorage, ExecutionRoleArn and TaskRoleArn are dropped (moto reads back EC2 + bridge).
- AWS::ECS::Service: CapacityProviderStrategy, NetworkConfiguration, LoadBalancers and
  DeploymentConfiguration are dropped.
- ELBv2 LoadBalancerAttributes and TargetGroupAttributes are dropped.
test_moto_still_ignores_the_bucket_settings fails when moto starts applying the bucket settings,
so that this list stays true.
"""

from __future__ import annotations

import ast
import json
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from cfnlint.decode import decode

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "cloudformation.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
STACK = "cfdb"
BUCKET = "cfdb-test-artifacts"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/cfdb-assets:test"
DB_HOST = "cfdb.abcdefghijkl.us-east-1.rds.amazonaws.com"
DB_PASSWORD = "db-password-never-in-env"
LEDGER_URL = f"postgresql://cfdb:{DB_PASSWORD}@{DB_HOST}:5432/cfdb"
MONGO_URI = "mongodb+srv://reader:mongo-password@catalog.example.org/cfdb"

# Families (suffix after the stack name) → (container name, command).
ROLES = {
    "api": ("api", ["api"]),
    "webserver": ("webserver", ["webserver"]),
    "daemon": ("daemon", ["daemon"]),
    "run-worker": ("run", None),  # EcsRunLauncher overrides the command of every run
}
DAGSTER_ROLES = ("webserver", "daemon", "run-worker")

# Resources moto's CloudFormation does not implement (skipped; the stack still completes).
MOTO_UNSUPPORTED = {"ClusterCapacityProviders", "ArtifactBucketPolicy"}
# Only with a CertificateArn.
HTTPS_ONLY = {"HttpsListener", "HttpsRedirect"}


@dataclass(frozen=True)
class Inputs:
    vpc: str
    private_subnets: list[str]
    public_subnets: list[str]
    database_sg: str
    password_arn: str
    ledger_arn: str
    catalog_arn: str


@dataclass(frozen=True)
class Stack:
    name: str
    outputs: dict[str, str]
    physical: dict[str, str]  # logical id → physical id, for what moto created


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory):
    """moto_server as its own process on loopback (its CloudFormation state is this module's)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"moto_server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto_server did not answer on {url} within 60 s: {log.read_text()[-2000:]}")
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def aws(moto_endpoint):
    """boto3 clients on the moto server, with fake credentials: one per service."""
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    clients = {}

    def client(service: str):
        if service not in clients:
            clients[service] = session.client(service, endpoint_url=moto_endpoint)
        return clients[service]

    yield client
    for opened in clients.values():  # open keep-alive connections would delay the server's exit
        opened.close()


@pytest.fixture(scope="module")
def inputs(aws) -> Inputs:
    """What the stack expects to exist: a VPC with private and public subnets, the database's
    security group, and the three secrets."""
    ec2 = aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"{REGION}{'ab'[i % 2]}")["Subnet"]["SubnetId"]
        for i in range(4)
    ]
    database_sg = ec2.create_security_group(GroupName="rds", Description="existing RDS", VpcId=vpc)["GroupId"]
    sm = aws("secretsmanager")
    return Inputs(
        vpc=vpc,
        private_subnets=subnets[:2],
        public_subnets=subnets[2:],
        database_sg=database_sg,
        password_arn=sm.create_secret(Name="cfdb/rds", SecretString=json.dumps({"username": "cfdb", "password": DB_PASSWORD}))["ARN"],
        ledger_arn=sm.create_secret(Name="cfdb/ledger-url", SecretString=LEDGER_URL)["ARN"],
        catalog_arn=sm.create_secret(Name="cfdb/catalog-uri", SecretString=MONGO_URI)["ARN"],
    )


def deploy(aws, inputs: Inputs, name: str, bucket: str, **extra: str) -> Stack:
    parameters = {
        "VpcId": inputs.vpc,
        "PrivateSubnetIds": ",".join(inputs.private_subnets),
        "PublicSubnetIds": ",".join(inputs.public_subnets),
        "ImageUri": IMAGE,
        "DatabaseEndpoint": DB_HOST,
        "DatabasePasswordSecretArn": inputs.password_arn,
        "LedgerUrlSecretArn": inputs.ledger_arn,
        "CatalogUriSecretArn": inputs.catalog_arn,
        "ArtifactBucketName": bucket,
        **extra,
    }
    cf = aws("cloudformation")
    cf.create_stack(
        StackName=name,
        TemplateBody=TEMPLATE.read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    cf.get_waiter("stack_create_complete").wait(StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    described = cf.describe_stacks(StackName=name)["Stacks"][0]
    resources = cf.list_stack_resources(StackName=name)["StackResourceSummaries"]
    return Stack(
        name=name,
        outputs={o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]},
        # moto lists the resources it skipped (unsupported, or condition false) without a logical id
        physical={r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources if r["LogicalResourceId"]},
    )


@pytest.fixture(scope="module")
def stack(aws, inputs) -> Stack:
    """HTTP only, the database's security group given, non-default knobs to see them wired."""
    return deploy(
        aws, inputs, STACK, BUCKET,
        DatabaseSecurityGroupId=inputs.database_sg,
        MaxConcurrentRuns="7", ApiDesiredCount="3", LogRetentionDays="14",
    )


@pytest.fixture(scope="module")
def tls_stack(aws, inputs) -> Stack:
    """With an ACM certificate: HTTPS listener plus the HTTP → HTTPS redirect."""
    cert = aws("acm").request_certificate(DomainName="cfdb.example.org")["CertificateArn"]
    return deploy(aws, inputs, "cfdb-tls", "cfdb-test-tls-artifacts", CertificateArn=cert)


@pytest.fixture(scope="module")
def template() -> dict:
    parsed, matches = decode(str(TEMPLATE))
    assert not matches, matches
    return parsed


def task_definition(aws, stack: Stack, role: str) -> dict:
    return aws("ecs").describe_task_definition(taskDefinition=f"{stack.name}-{role}")["taskDefinition"]


def container_env(aws, stack: Stack, role: str) -> tuple[dict[str, str], dict[str, str]]:
    (container,) = task_definition(aws, stack, role)["containerDefinitions"]
    env = {e["name"]: e["value"] for e in container.get("environment", [])}
    secrets = {s["name"]: s["valueFrom"] for s in container.get("secrets", [])}
    return env, secrets


def role_arn(aws, stack: Stack, logical_id: str) -> str:
    return aws("iam").get_role(RoleName=stack.physical[logical_id])["Role"]["Arn"]


def statements(aws, stack: Stack, logical_id: str) -> list[dict]:
    iam = aws("iam")
    name = stack.physical[logical_id]
    found = []
    for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
        if isinstance(document, str):
            # moto 5.2 returns inline policies that CloudFormation put as the repr of a dict.
            try:
                document = json.loads(document)
            except ValueError:
                document = ast.literal_eval(document)
        found += document["Statement"]
    assert all(s["Effect"] == "Allow" for s in found)
    return found


def _list(value) -> list:
    return value if isinstance(value, list) else [value]


def allowed(found: list[dict], action: str) -> list[dict]:
    """The statements that allow ``action``."""
    return [s for s in found if action in _list(s["Action"])]


def resources_for(found: list[dict], action: str) -> set[str]:
    return {r for s in allowed(found, action) for r in _list(s["Resource"])}


def actions(found: list[dict]) -> set[str]:
    return {a for s in found for a in _list(s["Action"])}


# --- lint ----------------------------------------------------------------------------------------


def test_template_passes_cfn_lint():
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    cfn_lint = str(cfn_lint) if cfn_lint.exists() else shutil.which("cfn-lint")
    assert cfn_lint, "cfn-lint is not installed; it is in the test extras (pip install -e '.[test]')."
    result = subprocess.run([cfn_lint, str(TEMPLATE)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


# --- what moto deploys ---------------------------------------------------------------------------


def test_stack_creates_every_resource_moto_supports(aws, stack, template):
    assert aws("cloudformation").describe_stacks(StackName=STACK)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    expected = set(template["Resources"]) - MOTO_UNSUPPORTED - HTTPS_ONLY
    assert set(stack.physical) == expected


def test_outputs_name_what_was_created(aws, stack):
    (lb,) = aws("elbv2").describe_load_balancers(LoadBalancerArns=[stack.physical["LoadBalancer"]])["LoadBalancers"]
    run_worker = task_definition(aws, stack, "run-worker")
    assert stack.outputs == {
        "ApiUrl": f"http://{lb['DNSName']}",
        "ClusterName": STACK,
        "ArtifactBucketName": BUCKET,
        "RunWorkerTaskDefinitionArn": run_worker["taskDefinitionArn"],
    }
    assert run_worker["family"] == "cfdb-run-worker"


def test_one_image_four_roles(aws, stack):
    (cluster,) = aws("ecs").describe_clusters(clusters=[stack.outputs["ClusterName"]])["clusters"]
    assert cluster["status"] == "ACTIVE"
    for role, (container_name, command) in ROLES.items():
        (container,) = task_definition(aws, stack, role)["containerDefinitions"]
        assert container["name"] == container_name
        assert container["image"] == IMAGE
        assert container.get("command") == command
        assert container["logConfiguration"] == {
            "logDriver": "awslogs",
            "options": {"awslogs-group": f"/cfdb/{STACK}/{role}", "awslogs-region": REGION,
                        "awslogs-stream-prefix": container_name},
        }
    ports = {role: [p["containerPort"] for p in task_definition(aws, stack, role)["containerDefinitions"][0]["portMappings"]] for role in ROLES}
    assert ports == {"api": [8000], "webserver": [3000], "daemon": [], "run-worker": []}


def test_environment_and_secrets_wiring(aws, stack, inputs):
    run_worker_arn = stack.outputs["RunWorkerTaskDefinitionArn"]
    for role in ROLES:
        env, secrets = container_env(aws, stack, role)
        assert env["CFDB_PROFILE"] == "production"
        assert env["CFDB_STORE"] == f"s3://{BUCKET}/artifacts"
        assert env["CFDB_ALLOW_FILE_URLS"] == "false"
        assert env["CFDB_CATALOG_DB"] == "cfdb"
        assert secrets["CFDB_LEDGER_URL"] == inputs.ledger_arn
        assert secrets["CFDB_CATALOG"] == inputs.catalog_arn
        assert not set(env) & set(secrets)
        for value in env.values():  # secrets never travel as plain environment
            assert DB_PASSWORD not in value and "mongo-password" not in value
        if role in DAGSTER_ROLES:
            assert {k: env[k] for k in env if k.startswith(("DAGSTER_PG_", "CFDB_RUN_", "CFDB_COMPUTE_LOG_", "CFDB_MAX_"))} == {
                "DAGSTER_PG_HOST": DB_HOST,
                "DAGSTER_PG_PORT": "5432",
                "DAGSTER_PG_DB": "cfdb",
                "DAGSTER_PG_USER": "cfdb",
                # A task definition cannot name its own ARN: the run worker gets the family.
                "CFDB_RUN_TASK_DEFINITION": "cfdb-run-worker" if role == "run-worker" else run_worker_arn,
                "CFDB_RUN_CONTAINER": "run",
                "CFDB_COMPUTE_LOG_BUCKET": BUCKET,
                "CFDB_COMPUTE_LOG_PREFIX": "compute-logs",
                "CFDB_MAX_CONCURRENT_RUNS": "7",
            }
            assert secrets == {
                "DAGSTER_PG_PASSWORD": f"{inputs.password_arn}:password::",  # the JSON key of an RDS secret
                "CFDB_LEDGER_URL": inputs.ledger_arn,
                "CFDB_CATALOG": inputs.catalog_arn,
            }
        else:  # the API never touches Dagster's storage or the launcher
            assert not [k for k in env if k.startswith(("DAGSTER_", "CFDB_RUN_", "CFDB_COMPUTE_LOG_"))]
            assert set(secrets) == {"CFDB_LEDGER_URL", "CFDB_CATALOG"}
            assert env["CFDB_DAGSTER_URL"] == "http://localhost:3000"  # the base of run_url in /jobs


def test_services_and_exactly_one_daemon(aws, stack):
    services = aws("ecs").describe_services(cluster=STACK, services=["api", "webserver", "daemon"])["services"]
    assert {s["serviceName"]: (s["desiredCount"], s["taskDefinition"]) for s in services} == {
        "api": (3, task_definition(aws, stack, "api")["taskDefinitionArn"]),
        "webserver": (1, task_definition(aws, stack, "webserver")["taskDefinitionArn"]),
        "daemon": (1, task_definition(aws, stack, "daemon")["taskDefinitionArn"]),
    }
    assert {s["clusterArn"] for s in services} == {f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{STACK}"}


def test_every_role_is_assumed_by_ecs_tasks_only(aws, stack):
    for logical_id in ("TaskExecutionRole", "ApiTaskRole", "WebserverTaskRole", "DaemonTaskRole", "RunWorkerTaskRole"):
        trust = aws("iam").get_role(RoleName=stack.physical[logical_id])["Role"]["AssumeRolePolicyDocument"]
        assert [(s["Principal"], s["Action"]) for s in trust["Statement"]] == [
            ({"Service": "ecs-tasks.amazonaws.com"}, "sts:AssumeRole")
        ]
        assert not aws("iam").list_attached_role_policies(RoleName=stack.physical[logical_id])["AttachedPolicies"]


def test_daemon_launches_run_workers_and_passes_exactly_their_two_roles(aws, stack, inputs):
    found = statements(aws, stack, "DaemonTaskRole")
    cluster_arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{STACK}"
    assert {"ecs:RunTask", "ecs:DescribeTasks", "ecs:StopTask", "ecs:ListTasks", "ecs:TagResource",
            "ecs:RegisterTaskDefinition", "ecs:DescribeTaskDefinition"} <= actions(found)
    assert resources_for(found, "iam:PassRole") == {
        role_arn(aws, stack, "RunWorkerTaskRole"), role_arn(aws, stack, "TaskExecutionRole")
    }
    (run_task,) = allowed(found, "ecs:RunTask")
    assert run_task["Resource"] == f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{STACK}-run-worker:*"
    assert run_task["Condition"] == {"ArnEquals": {"ecs:cluster": cluster_arn}}
    (list_tasks,) = allowed(found, "ecs:ListTasks")
    assert list_tasks["Condition"] == {"ArnEquals": {"ecs:cluster": cluster_arn}}
    in_cluster = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{STACK}/*"
    for action in ("ecs:DescribeTasks", "ecs:StopTask", "ecs:TagResource"):
        assert resources_for(found, action) == {in_cluster}
    assert resources_for(found, "secretsmanager:GetSecretValue") == {inputs.password_arn, inputs.ledger_arn, inputs.catalog_arn}
    assert resources_for(found, "logs:GetLogEvents") == {f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/cfdb/{STACK}/run-worker"}
    assert resources_for(found, "s3:PutObject") == {f"arn:aws:s3:::{BUCKET}/compute-logs/*"}


def test_execution_role_pulls_the_image_writes_logs_reads_exactly_the_secrets(aws, stack, inputs):
    found = statements(aws, stack, "TaskExecutionRole")
    assert resources_for(found, "secretsmanager:GetSecretValue") == {inputs.password_arn, inputs.ledger_arn, inputs.catalog_arn}
    assert resources_for(found, "ecr:BatchGetImage") == {f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/cfdb-assets"}
    groups = {g["logGroupName"]: g for g in aws("logs").describe_log_groups(logGroupNamePrefix=f"/cfdb/{STACK}/")["logGroups"]}
    assert {name: g["retentionInDays"] for name, g in groups.items()} == {f"/cfdb/{STACK}/{role}": 14 for role in ROLES}
    assert resources_for(found, "logs:PutLogEvents") == {g["logGroupArn"] for g in groups.values()}
    assert actions(found) == {"ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer",
                              "ecr:BatchGetImage", "logs:CreateLogStream", "logs:PutLogEvents", "secretsmanager:GetSecretValue"}


def test_s3_access_per_role(aws, stack):
    artifacts, logs, bucket = f"arn:aws:s3:::{BUCKET}/artifacts/*", f"arn:aws:s3:::{BUCKET}/compute-logs/*", f"arn:aws:s3:::{BUCKET}"

    api = statements(aws, stack, "ApiTaskRole")  # read-only
    assert actions(api) == {"s3:GetObject", "s3:ListBucket"}
    assert resources_for(api, "s3:GetObject") == {artifacts}

    worker = statements(aws, stack, "RunWorkerTaskRole")
    for action in ("s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"):
        assert resources_for(worker, action) == {artifacts, logs}
    assert resources_for(worker, "s3:ListMultipartUploadParts") == {artifacts}
    assert resources_for(worker, "s3:PutObjectTagging") == {artifacts}  # stage records are tagged at upload
    assert resources_for(worker, "s3:ListBucket") == {bucket}
    assert not {a for a in actions(worker) if not a.startswith("s3:")}

    webserver = statements(aws, stack, "WebserverTaskRole")  # reads compute logs, terminates runs
    assert {a for a in actions(webserver) if a.startswith("s3:")} == {"s3:GetObject", "s3:ListBucket"}
    assert resources_for(webserver, "s3:GetObject") == {logs}
    (listing,) = allowed(webserver, "s3:ListBucket")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": "compute-logs/*"}}
    assert resources_for(webserver, "ecs:StopTask") == {f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{STACK}/*"}


def test_no_wildcards_beyond_actions_aws_cannot_scope(aws, stack):
    unscopable = {"ecr:GetAuthorizationToken", "ecs:ListTasks", "ecs:DescribeTaskDefinition",
                  "ecs:RegisterTaskDefinition", "ec2:DescribeNetworkInterfaces"}
    for logical_id in ("TaskExecutionRole", "ApiTaskRole", "WebserverTaskRole", "DaemonTaskRole", "RunWorkerTaskRole"):
        for statement in statements(aws, stack, logical_id):
            assert not [a for a in _list(statement["Action"]) if "*" in a], statement
            if "*" in _list(statement["Resource"]):
                assert set(_list(statement["Action"])) <= unscopable, (logical_id, statement)
            for resource in _list(statement["Resource"]):
                if resource.startswith("arn:aws:s3:"):
                    assert resource == f"arn:aws:s3:::{BUCKET}" or resource.startswith(f"arn:aws:s3:::{BUCKET}/"), statement


def test_load_balancer_reaches_the_api_on_health_checked_targets(aws, stack, inputs):
    elb = aws("elbv2")
    (lb,) = elb.describe_load_balancers(LoadBalancerArns=[stack.physical["LoadBalancer"]])["LoadBalancers"]
    assert lb["Scheme"] == "internet-facing"
    assert sorted(z["SubnetId"] for z in lb["AvailabilityZones"]) == sorted(inputs.public_subnets)
    assert lb["SecurityGroups"] == [stack.physical["LoadBalancerSecurityGroup"]]
    (tg,) = elb.describe_target_groups(TargetGroupArns=[stack.physical["ApiTargetGroup"]])["TargetGroups"]
    assert (tg["TargetType"], tg["Protocol"], tg["Port"], tg["VpcId"]) == ("ip", "HTTP", 8000, inputs.vpc)
    assert (tg["HealthCheckPath"], tg["Matcher"]) == ("/health", {"HttpCode": "200"})
    (listener,) = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    assert (listener["Protocol"], listener["Port"]) == ("HTTP", 80)
    assert listener["DefaultActions"] == [{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}]
    assert [r["IsDefault"] for r in elb.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]] == [True]


def test_https_listener_and_redirect_with_a_certificate(aws, tls_stack, template):
    elb = aws("elbv2")
    assert tls_stack.outputs["ApiUrl"].startswith("https://")
    assert set(tls_stack.physical) == set(template["Resources"]) - MOTO_UNSUPPORTED - {"DatabaseIngress"}
    listeners = {ln["Port"]: ln for ln in elb.describe_listeners(LoadBalancerArn=tls_stack.physical["LoadBalancer"])["Listeners"]}
    assert sorted(listeners) == [80, 443]
    assert listeners[443]["Protocol"] == "HTTPS"
    assert listeners[443]["DefaultActions"] == [{"Type": "forward", "TargetGroupArn": tls_stack.physical["ApiTargetGroup"]}]
    (redirect,) = [r for r in elb.describe_rules(ListenerArn=listeners[80]["ListenerArn"])["Rules"] if not r["IsDefault"]]
    assert redirect["Actions"] == [{"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}}]


def test_security_groups_open_only_what_each_role_serves(aws, stack, inputs):
    groups = {g["GroupId"]: g for g in aws("ec2").describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [inputs.vpc]}])["SecurityGroups"]}

    def ingress(group_id):
        return sorted(
            (p["FromPort"], p["ToPort"], tuple(r["CidrIp"] for r in p["IpRanges"]), tuple(u["GroupId"] for u in p["UserIdGroupPairs"]))
            for p in groups[group_id]["IpPermissions"]
        )

    task_sg, lb_sg = stack.physical["TaskSecurityGroup"], stack.physical["LoadBalancerSecurityGroup"]
    assert ingress(lb_sg) == [(80, 80, ("0.0.0.0/0",), ()), (443, 443, ("0.0.0.0/0",), ())]
    assert ingress(stack.physical["ApiSecurityGroup"]) == [(8000, 8000, (), (lb_sg,))]
    assert ingress(stack.physical["WebserverSecurityGroup"]) == [(3000, 3000, ("10.0.0.0/8",), ())]
    assert ingress(task_sg) == []
    assert ingress(inputs.database_sg) == [(5432, 5432, (), (task_sg,))]


def test_bucket_exists_with_sse_s3(aws, stack):
    s3 = aws("s3")
    s3.head_bucket(Bucket=BUCKET)
    (rule,) = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_moto_still_ignores_the_bucket_settings(aws, stack):
    """The canary for the module docstring: when this fails, moto applies these settings and
    test_bucket_rules should read them from moto instead of from the template."""
    s3 = aws("s3")
    for call, code in [
        (s3.get_bucket_cors, "NoSuchCORSConfiguration"),
        (s3.get_bucket_lifecycle_configuration, "NoSuchLifecycleConfiguration"),
        (s3.get_public_access_block, "NoSuchPublicAccessBlockConfiguration"),
        (s3.get_bucket_policy, "NoSuchBucketPolicy"),
    ]:
        with pytest.raises(ClientError) as error:
            call(Bucket=BUCKET)
        assert error.value.response["Error"]["Code"] == code


# --- what moto cannot model: checked in the template ---------------------------------------------


def test_bucket_rules(template):
    bucket = template["Resources"]["ArtifactBucket"]
    assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("Retain", "Retain")
    props = bucket["Properties"]
    assert props["CorsConfiguration"]["CorsRules"] == [{
        "AllowedOrigins": ["*"],
        "AllowedMethods": ["GET", "HEAD"],
        "AllowedHeaders": ["Range", "If-None-Match", "If-Range"],
        "ExposedHeaders": ["Content-Range", "Content-Length", "Accept-Ranges", "ETag"],
        "MaxAge": 86400,
    }]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
    }
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert rules["abort-incomplete-multipart-uploads"] == {
        "Id": "abort-incomplete-multipart-uploads", "Status": "Enabled",
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2},
    }
    stage = rules["expire-stage-records"]
    assert stage["TagFilters"] == [{"Key": "cfdb-stage", "Value": "true"}]
    assert (stage["Prefix"], stage["ExpirationInDays"]) == ("artifacts/", {"Ref": "StageRecordExpirationDays"})
    assert "AbortIncompleteMultipartUpload" not in stage  # S3 rejects it next to a tag filter
    assert rules["expire-compute-logs"]["Prefix"] == "compute-logs/"
    policy = template["Resources"]["ArtifactBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert [(s["Effect"], s["Condition"]) for s in policy] == [("Deny", {"Bool": {"aws:SecureTransport": "false"}})]


def test_cluster_capacity_providers(template):
    resources = template["Resources"]
    association = resources["ClusterCapacityProviders"]["Properties"]
    assert association["Cluster"] == {"Ref": "Cluster"}
    assert association["CapacityProviders"] == ["FARGATE", "FARGATE_SPOT"]
    for service in ("ApiService", "WebserverService", "DaemonService"):
        # A capacity provider strategy fails until the association exists.
        assert "ClusterCapacityProviders" in _list(resources[service]["DependsOn"])


def test_task_definitions_are_fargate_with_their_own_task_roles(template):
    resources = template["Resources"]
    for logical_id, role in [("ApiTaskDefinition", "ApiTaskRole"), ("WebserverTaskDefinition", "WebserverTaskRole"),
                             ("DaemonTaskDefinition", "DaemonTaskRole"), ("RunWorkerTaskDefinition", "RunWorkerTaskRole")]:
        props = resources[logical_id]["Properties"]
        assert (props["RequiresCompatibilities"], props["NetworkMode"]) == (["FARGATE"], "awsvpc")
        assert props["TaskRoleArn"] == {"Fn::GetAtt": [role, "Arn"]}
        assert props["ExecutionRoleArn"] == {"Fn::GetAtt": ["TaskExecutionRole", "Arn"]}


def test_services_network_and_deployments(template):
    resources = template["Resources"]
    for logical_id in ("ApiService", "WebserverService", "DaemonService"):
        vpc = resources[logical_id]["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
        assert (vpc["Subnets"], vpc["AssignPublicIp"]) == ({"Ref": "PrivateSubnetIds"}, "DISABLED")
        assert {"Ref": "TaskSecurityGroup"} in vpc["SecurityGroups"]
    # Never two daemons: the old task stops before the new one starts.
    daemon = resources["DaemonService"]["Properties"]
    assert daemon["DeploymentConfiguration"] == {"MaximumPercent": 100, "MinimumHealthyPercent": 0}
    # Run workers copy the daemon's security groups: only the database-client group.
    assert daemon["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"] == [{"Ref": "TaskSecurityGroup"}]
    assert resources["ApiService"]["Properties"]["LoadBalancers"] == [
        {"ContainerName": "api", "ContainerPort": 8000, "TargetGroupArn": {"Ref": "ApiTargetGroup"}}
    ]
