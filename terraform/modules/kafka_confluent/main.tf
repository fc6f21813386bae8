# The Kafka alternative on Confluent Cloud: an environment, a cluster, the six topics of the
# contract, service accounts with API keys scoped by ACLs, and an optional Datagen connector.
# The provider authenticates with a Cloud API key from CONFLUENT_CLOUD_API_KEY /
# CONFLUENT_CLOUD_API_SECRET in the shell that runs terraform; nothing secret is a variable.
# The ingest and producer API keys are stored in AWS Secrets Manager for the ECS tasks.

locals {
  tags = merge(var.tags, { "tidelake:module" = "kafka_confluent" })

  # The contract (tidelake/contracts.py): logical name => retention. Keys: user_id, or device_id
  # for infra.sensor_readings; the key only matters to producers.
  topics = {
    "shop.page_views"       = { retention_days = 7 }
    "shop.clicks"           = { retention_days = 7 }
    "shop.searches"         = { retention_days = 7 }
    "shop.purchases"        = { retention_days = 30 }
    "app.interactions"      = { retention_days = 7 }
    "infra.sensor_readings" = { retention_days = 7 }
  }

  # ACLs are granted per topic namespace ("dev.shop.", "dev.app.", ...) rather than per topic.
  topic_namespaces = toset([for t in keys(local.topics) : "${var.topic_prefix}${split(".", t)[0]}."])
  datagen_topic    = "${var.topic_prefix}datagen.pageviews"
  ms_per_day       = 86400000
}

resource "confluent_environment" "this" {
  display_name = var.name
}

resource "confluent_kafka_cluster" "this" {
  display_name = var.name
  availability = var.availability
  cloud        = "AWS"
  region       = var.cloud_region

  dynamic "basic" {
    for_each = var.cluster_type == "basic" ? [1] : []
    content {}
  }

  dynamic "standard" {
    for_each = var.cluster_type == "standard" ? [1] : []
    content {}
  }

  environment {
    id = confluent_environment.this.id
  }
}

# --- service accounts ---------------------------------------------------------------------------

# Terraform's own identity inside the cluster: creates topics and ACLs. Its key stays in state.
resource "confluent_service_account" "manager" {
  display_name = "${var.name}-manager"
  description  = "Terraform: manages topics and ACLs of ${var.name}"
}

resource "confluent_role_binding" "manager_cluster_admin" {
  principal   = "User:${confluent_service_account.manager.id}"
  role_name   = "CloudClusterAdmin"
  crn_pattern = confluent_kafka_cluster.this.rbac_crn
}

resource "confluent_api_key" "manager" {
  display_name = "${var.name}-manager"
  description  = "Kafka API key of the Terraform manager service account"

  owner {
    id          = confluent_service_account.manager.id
    api_version = confluent_service_account.manager.api_version
    kind        = confluent_service_account.manager.kind
  }

  managed_resource {
    id          = confluent_kafka_cluster.this.id
    api_version = confluent_kafka_cluster.this.api_version
    kind        = confluent_kafka_cluster.this.kind

    environment {
      id = confluent_environment.this.id
    }
  }

  depends_on = [confluent_role_binding.manager_cluster_admin]
}

# Dagster (sensors and ingestion runs): reads the contract topics, uses the consumer groups.
resource "confluent_service_account" "ingest" {
  display_name = "${var.name}-ingest"
  description  = "Tidelake ingestion: consumes the contract topics of ${var.name}"
}

resource "confluent_api_key" "ingest" {
  display_name = "${var.name}-ingest"
  description  = "Kafka API key of the Tidelake ingestion service account"

  owner {
    id          = confluent_service_account.ingest.id
    api_version = confluent_service_account.ingest.api_version
    kind        = confluent_service_account.ingest.kind
  }

  managed_resource {
    id          = confluent_kafka_cluster.this.id
    api_version = confluent_kafka_cluster.this.api_version
    kind        = confluent_kafka_cluster.this.kind

    environment {
      id = confluent_environment.this.id
    }
  }
}

# The HTTP API and the simulator: write to the contract topics.
resource "confluent_service_account" "producer" {
  display_name = "${var.name}-producer"
  description  = "Tidelake API and simulator: produce to the contract topics of ${var.name}"
}

resource "confluent_api_key" "producer" {
  display_name = "${var.name}-producer"
  description  = "Kafka API key of the Tidelake producer service account"

  owner {
    id          = confluent_service_account.producer.id
    api_version = confluent_service_account.producer.api_version
    kind        = confluent_service_account.producer.kind
  }

  managed_resource {
    id          = confluent_kafka_cluster.this.id
    api_version = confluent_kafka_cluster.this.api_version
    kind        = confluent_kafka_cluster.this.kind

    environment {
      id = confluent_environment.this.id
    }
  }
}

# --- topics -------------------------------------------------------------------------------------

resource "confluent_kafka_topic" "contract" {
  for_each = local.topics

  kafka_cluster {
    id = confluent_kafka_cluster.this.id
  }

  topic_name       = "${var.topic_prefix}${each.key}"
  partitions_count = lookup(var.partitions_by_topic, each.key, var.partitions)
  rest_endpoint    = confluent_kafka_cluster.this.rest_endpoint

  config = {
    "cleanup.policy" = "delete"
    "retention.ms"   = tostring(each.value.retention_days * local.ms_per_day)
  }

  credentials {
    key    = confluent_api_key.manager.id
    secret = confluent_api_key.manager.secret
  }
}

# --- ACLs ---------------------------------------------------------------------------------------

locals {
  ingest_topic_acls = {
    for pair in setproduct(local.topic_namespaces, ["READ", "DESCRIBE", "DESCRIBE_CONFIGS"]) :
    "${pair[0]}:${pair[1]}" => { namespace = pair[0], operation = pair[1] }
  }
  producer_topic_acls = {
    for pair in setproduct(local.topic_namespaces, ["WRITE", "DESCRIBE"]) :
    "${pair[0]}:${pair[1]}" => { namespace = pair[0], operation = pair[1] }
  }
}

resource "confluent_kafka_acl" "ingest_topics" {
  for_each = local.ingest_topic_acls

  kafka_cluster {
    id = confluent_kafka_cluster.this.id
  }

  resource_type = "TOPIC"
  resource_name = each.value.namespace
  pattern_type  = "PREFIXED"
  principal     = "User:${confluent_service_account.ingest.id}"
  host          = "*"
  operation     = each.value.operation
  permission    = "ALLOW"
  rest_endpoint = confluent_kafka_cluster.this.rest_endpoint

  credentials {
    key    = confluent_api_key.manager.id
    secret = confluent_api_key.manager.secret
  }
}

resource "confluent_kafka_acl" "ingest_groups" {
  for_each = toset(["READ", "DESCRIBE"])

  kafka_cluster {
    id = confluent_kafka_cluster.this.id
  }

  resource_type = "GROUP"
  resource_name = var.consumer_group_prefix
  pattern_type  = "PREFIXED"
  principal     = "User:${confluent_service_account.ingest.id}"
  host          = "*"
  operation     = each.key
  permission    = "ALLOW"
  rest_endpoint = confluent_kafka_cluster.this.rest_endpoint

  credentials {
    key    = confluent_api_key.manager.id
    secret = confluent_api_key.manager.secret
  }
}

resource "confluent_kafka_acl" "producer_topics" {
  for_each = local.producer_topic_acls

  kafka_cluster {
    id = confluent_kafka_cluster.this.id
  }

  resource_type = "TOPIC"
  resource_name = each.value.namespace
  pattern_type  = "PREFIXED"
  principal     = "User:${confluent_service_account.producer.id}"
  host          = "*"
  operation     = each.value.operation
  permission    = "ALLOW"
  rest_endpoint = confluent_kafka_cluster.this.rest_endpoint

  credentials {
    key    = confluent_api_key.manager.id
    secret = confluent_api_key.manager.secret
  }
}

# --- Datagen sample data ------------------------------------------------------------------------
# Datagen's PAGEVIEWS records (viewtime, userid, pageid) are not Tidelake's contract, so they go
# to a topic of their own: they prove that a managed connector can write to the cluster and give
# a live stream to look at. Contract-shaped traffic comes from `tidelake simulate`. Pointing the
# connector at a contract topic instead would exercise the quarantine path.

resource "confluent_service_account" "datagen" {
  count = var.datagen_enabled ? 1 : 0

  display_name = "${var.name}-datagen"
  description  = "Datagen source connector of ${var.name}"
}

resource "confluent_kafka_topic" "datagen" {
  count = var.datagen_enabled ? 1 : 0

  kafka_cluster {
    id = confluent_kafka_cluster.this.id
  }

  topic_name       = local.datagen_topic
  partitions_count = 1
  rest_endpoint    = confluent_kafka_cluster.this.rest_endpoint

  config = {
    "cleanup.policy" = "delete"
    "retention.ms"   = tostring(local.ms_per_day)
  }

  credentials {
    key    = confluent_api_key.manager.id
    secret = confluent_api_key.manager.secret
  }
}

resource "confluent_kafka_acl" "datagen_cluster" {
  count = var.datagen_enabled ? 1 : 0

  kafka_cluster {
    id = confluent_kafka_cluster.this.id
  }

  resource_type = "CLUSTER"
  resource_name = "kafka-cluster"
  pattern_type  = "LITERAL"
  principal     = "User:${confluent_service_account.datagen[0].id}"
  host          = "*"
  operation     = "DESCRIBE"
  permission    = "ALLOW"
  rest_endpoint = confluent_kafka_cluster.this.rest_endpoint

  credentials {
    key    = confluent_api_key.manager.id
    secret = confluent_api_key.manager.secret
  }
}

resource "confluent_kafka_acl" "datagen_topic" {
  for_each = var.datagen_enabled ? toset(["WRITE", "DESCRIBE"]) : toset([])

  kafka_cluster {
    id = confluent_kafka_cluster.this.id
  }

  resource_type = "TOPIC"
  resource_name = local.datagen_topic
  pattern_type  = "LITERAL"
  principal     = "User:${confluent_service_account.datagen[0].id}"
  host          = "*"
  operation     = each.key
  permission    = "ALLOW"
  rest_endpoint = confluent_kafka_cluster.this.rest_endpoint

  credentials {
    key    = confluent_api_key.manager.id
    secret = confluent_api_key.manager.secret
  }
}

resource "confluent_connector" "datagen" {
  count = var.datagen_enabled ? 1 : 0

  environment {
    id = confluent_environment.this.id
  }

  kafka_cluster {
    id = confluent_kafka_cluster.this.id
  }

  config_sensitive = {}

  config_nonsensitive = {
    "connector.class"          = "DatagenSource"
    "name"                     = "${var.name}-datagen-pageviews"
    "kafka.auth.mode"          = "SERVICE_ACCOUNT"
    "kafka.service.account.id" = confluent_service_account.datagen[0].id
    "kafka.topic"              = confluent_kafka_topic.datagen[0].topic_name
    "output.data.format"       = "JSON"
    "quickstart"               = "PAGEVIEWS"
    "max.interval"             = tostring(var.datagen_max_interval_ms)
    "tasks.max"                = "1"
  }

  depends_on = [
    confluent_kafka_acl.datagen_cluster,
    confluent_kafka_acl.datagen_topic,
  ]
}

# --- credentials for the ECS tasks ----------------------------------------------------------------

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

resource "aws_kms_key" "secrets" {
  description             = "${var.name}: Confluent Cloud API keys in Secrets Manager"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdmin"
      Effect    = "Allow"
      Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })
  tags = local.tags
}

locals {
  client_secrets = {
    ingest   = confluent_api_key.ingest
    producer = confluent_api_key.producer
  }
}

resource "aws_secretsmanager_secret" "client" {
  #checkov:skip=CKV2_AWS_57:Confluent API keys are rotated by creating a new key in Terraform (confluent_api_key), not by a Lambda; see docs/DEPLOY.md.
  for_each = local.client_secrets

  name_prefix             = "${var.name}/kafka/${each.key}-"
  description             = "Confluent Cloud API key of the ${each.key} service account (JSON: username, password)"
  kms_key_id              = aws_kms_key.secrets.arn
  recovery_window_in_days = var.secret_recovery_window_days
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "client" {
  for_each = local.client_secrets

  secret_id = aws_secretsmanager_secret.client[each.key].id
  secret_string = jsonencode({
    username = each.value.id
    password = each.value.secret
  })
}
