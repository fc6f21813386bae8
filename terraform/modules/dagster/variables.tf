variable "name" {
  type        = string
  description = "Name prefix of every resource, e.g. tidelake-dev."
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}

variable "tidelake_env" {
  type        = string
  description = "Value of TIDELAKE_ENV in every container."
  default     = "prod"

  validation {
    condition     = contains(["local", "test", "prod"], var.tidelake_env)
    error_message = "tidelake_env is local, test or prod."
  }
}

# --- network ------------------------------------------------------------------------------------

variable "vpc_id" {
  type        = string
  description = "VPC of the tasks, the database and the load balancer."
}

variable "private_subnet_ids" {
  type        = list(string)
  description = "Private subnets (with NAT egress) for the webserver, daemon, ingestion worker and run tasks."
}

variable "public_subnet_ids" {
  type        = list(string)
  description = "Subnets of the webserver's load balancer (public ones unless internal_alb = true)."
}

variable "database_subnet_ids" {
  type        = list(string)
  description = "Subnets (two or more zones) for the RDS Postgres instance."
}

variable "extra_security_group_ids" {
  type        = list(string)
  description = "More security groups for every task, e.g. the MSK client group."
  default     = []
}

variable "kafka_egress_port" {
  type        = number
  description = "TCP port the tasks may open to kafka_egress_cidrs (9092 for Confluent Cloud); null when a security group (MSK) grants it."
  default     = null
}

variable "kafka_egress_cidrs" {
  type        = list(string)
  description = "Where the Kafka brokers are, for the kafka_egress_port rule (Confluent Cloud public endpoints: 0.0.0.0/0)."
  default     = []
}

# --- webserver access ---------------------------------------------------------------------------

variable "allowed_cidrs" {
  type        = list(string)
  description = "CIDR blocks allowed to reach the Dagster webserver's load balancer (the UI has no login of its own)."

  validation {
    condition     = length(var.allowed_cidrs) > 0 && !contains(var.allowed_cidrs, "0.0.0.0/0")
    error_message = "List the CIDR blocks of your offices or VPN; the Dagster UI must not be open to the internet."
  }
}

variable "internal_alb" {
  type        = bool
  description = "Make the webserver's load balancer internal (reachable only through the VPC, e.g. over a VPN)."
  default     = false
}

variable "certificate_arn" {
  type        = string
  description = "ACM certificate for the webserver's HTTPS listener."
}

variable "alb_log_bucket" {
  type        = string
  description = "Bucket for the load balancer's access logs (the logs module)."
}

variable "alb_log_prefix" {
  type        = string
  description = "Key prefix for the load balancer's access logs in alb_log_bucket."
  default     = "alb"
}

variable "web_acl_arn" {
  type        = string
  description = "Optional WAFv2 web ACL to associate with the webserver's load balancer."
  default     = null
}

# --- image and sizes ----------------------------------------------------------------------------

variable "image" {
  type        = string
  description = "Container image of the code location (the repository's Dockerfile), e.g. <account>.dkr.ecr.<region>.amazonaws.com/tidelake:<git sha>."
}

variable "webserver_cpu" {
  type        = number
  description = "Fargate CPU units of the webserver task."
  default     = 1024
}

variable "webserver_memory" {
  type        = number
  description = "Fargate memory (MiB) of the webserver task."
  default     = 2048
}

variable "daemon_cpu" {
  type        = number
  description = "Fargate CPU units of the daemon task (sensors, schedules, run queue)."
  default     = 1024
}

variable "daemon_memory" {
  type        = number
  description = "Fargate memory (MiB) of the daemon task."
  default     = 2048
}

variable "run_cpu" {
  type        = number
  description = "Fargate CPU units of each run task (a run can override it with the ecs/cpu tag)."
  default     = 2048
}

variable "run_memory" {
  type        = number
  description = "Fargate memory (MiB) of each run task (a run can override it with the ecs/memory tag)."
  default     = 8192
}

variable "run_ephemeral_storage_gib" {
  type        = number
  description = "Ephemeral storage of each run task in GiB (21-200): Polars and DuckDB spill here."
  default     = 50
}

variable "worker_cpu" {
  type        = number
  description = "Fargate CPU units of the always-on ingestion worker task (tidelake ingest --follow: one thread per topic)."
  default     = 2048
}

variable "worker_memory" {
  type        = number
  description = "Fargate memory (MiB) of the ingestion worker task: during a backlog each of the six topic threads may hold up to TIDELAKE_MAX_BATCH_BYTES, plus about 1 GiB for the process."
  default     = 8192
}

variable "worker_stop_timeout_seconds" {
  type        = number
  description = "Seconds ECS waits after SIGTERM before killing the worker, so the batches in progress can commit (Fargate allows at most 120)."
  default     = 120

  validation {
    condition     = var.worker_stop_timeout_seconds >= 30 && var.worker_stop_timeout_seconds <= 120
    error_message = "worker_stop_timeout_seconds is 30-120 (the Fargate maximum is 120)."
  }
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the CloudWatch log group of all Dagster tasks, in days."
  default     = 365
}

# --- lake and Kafka -----------------------------------------------------------------------------

variable "lake_uri" {
  type        = string
  description = "LAKE_URI of every container: s3://<bucket>/<prefix>."

  validation {
    condition     = startswith(var.lake_uri, "s3://")
    error_message = "lake_uri must be an s3:// URI."
  }
}

variable "compute_log_bucket" {
  type        = string
  description = "Bucket for Dagster's S3 compute log manager (the lake bucket)."
}

variable "compute_log_prefix" {
  type        = string
  description = "Key prefix for Dagster's compute logs in compute_log_bucket."
}

variable "run_policy_arns" {
  type        = list(string)
  description = "IAM policies for the role of the run tasks and the ingestion worker: lake read-write, compute logs, Kafka consumer."
}

variable "launcher_policy_arns" {
  type        = list(string)
  description = "IAM policies for the webserver and daemon role (sensors read Kafka and the lake): e.g. Kafka consumer, lake read-write, compute logs."
}

variable "kafka_env" {
  type        = map(string)
  description = "Non-secret Kafka variables (KAFKA_BOOTSTRAP_SERVERS, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, TIDELAKE_TOPIC_PREFIX); a kafka module's client_env output."
}

variable "kafka_secret_arn" {
  type        = string
  description = "Secrets Manager secret with JSON keys username/password for KAFKA_SASL_USERNAME/PASSWORD; null for IAM auth (MSK)."
  default     = null
}

variable "kafka_secret_kms_key_arn" {
  type        = string
  description = "KMS key that encrypts kafka_secret_arn (the execution role needs to decrypt it); null with kafka_secret_arn = null."
  default     = null
}

variable "consumer_group" {
  type        = string
  description = "TIDELAKE_CONSUMER_GROUP: the Kafka consumer group and the first part of every Delta txn app_id."
  default     = "tidelake-ingest"
}

variable "extra_env" {
  type        = map(string)
  description = "More non-secret environment variables for every container (e.g. TIDELAKE_MAX_BATCH_RECORDS); TIDELAKE_INGEST_MODEL is set by ingest_model."
  default     = {}
}

variable "ingest_model" {
  type        = string
  description = "TIDELAKE_INGEST_MODEL of every container: worker (the always-on ingestion worker service drains Kafka; the sensors only observe lag), runs (a Dagster run per topic and batch) or tick (one run per sensor tick); with runs or tick the worker service is scaled to 0."
  default     = "worker"

  validation {
    condition     = contains(["worker", "runs", "tick"], var.ingest_model)
    error_message = "ingest_model is worker, runs or tick."
  }
}

variable "alert_webhook_secret_arn" {
  type        = string
  description = "Optional Secrets Manager secret holding TIDELAKE_ALERT_WEBHOOK_URL (failure alerts)."
  default     = null
}

# --- database -----------------------------------------------------------------------------------

variable "db_instance_class" {
  type        = string
  description = "RDS instance class of Dagster's Postgres."
  default     = "db.t4g.small"
}

variable "db_engine_version" {
  type        = string
  description = "Postgres major version of Dagster's database."
  default     = "16"
}

variable "db_allocated_storage_gib" {
  type        = number
  description = "Initial storage of the database in GiB (it grows automatically up to 5x)."
  default     = 20
}

variable "db_multi_az" {
  type        = bool
  description = "Standby replica in a second zone (production: true)."
  default     = true
}

variable "db_backup_retention_days" {
  type        = number
  description = "Days of automated database backups (1-35)."
  default     = 14
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the database and the load balancer from deletion; take a final snapshot on destroy (production: true)."
  default     = true
}

variable "secret_recovery_window_days" {
  type        = number
  description = "Days a deleted database-password secret can be restored (0 deletes immediately, for dev teardown)."
  default     = 30
}
