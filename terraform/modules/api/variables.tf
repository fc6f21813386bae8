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
  description = "Value of TIDELAKE_ENV in the API containers."
  default     = "prod"

  validation {
    condition     = contains(["local", "test", "prod"], var.tidelake_env)
    error_message = "tidelake_env is local, test or prod."
  }
}

variable "cluster_name" {
  type        = string
  description = "ECS cluster to run the API service in (the dagster module's cluster_name)."
}

variable "vpc_id" {
  type        = string
  description = "VPC of the tasks and the load balancer."
}

variable "private_subnet_ids" {
  type        = list(string)
  description = "Private subnets (with NAT egress) for the API tasks."
}

variable "public_subnet_ids" {
  type        = list(string)
  description = "Subnets of the API's load balancer (public ones unless internal_alb = true)."
}

variable "extra_security_group_ids" {
  type        = list(string)
  description = "More security groups for the API tasks, e.g. the MSK client group."
  default     = []
}

variable "kafka_egress_port" {
  type        = number
  description = "TCP port the tasks may open to kafka_egress_cidrs (9092 for Confluent Cloud); null when a security group (MSK) grants it."
  default     = null
}

variable "kafka_egress_cidrs" {
  type        = list(string)
  description = "Where the Kafka brokers are, for the kafka_egress_port rule."
  default     = []
}

variable "allowed_cidrs" {
  type        = list(string)
  description = "CIDR blocks allowed to call the API over HTTPS (0.0.0.0/0 for a public API)."
}

variable "internal_alb" {
  type        = bool
  description = "Make the API's load balancer internal (only callers inside the VPC or connected networks)."
  default     = false
}

variable "certificate_arn" {
  type        = string
  description = "ACM certificate for the API's HTTPS listener."
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
  description = "Optional WAFv2 web ACL to associate with the API's load balancer (recommended when it is public)."
  default     = null
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the load balancer from deletion (production: true)."
  default     = true
}

variable "image" {
  type        = string
  description = "Container image (the repository's Dockerfile), e.g. <account>.dkr.ecr.<region>.amazonaws.com/tidelake:<git sha>."
}

variable "command" {
  type        = list(string)
  description = "Container command that serves the API on container_port."
  default     = ["uvicorn", "tidelake.api:app", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
}

variable "container_port" {
  type        = number
  description = "Port the API listens on inside the container."
  default     = 8000
}

variable "health_check_path" {
  type        = string
  description = "HTTP path of the API's health endpoint."
  default     = "/healthz"
}

variable "cpu" {
  type        = number
  description = "Fargate CPU units of one API task."
  default     = 512
}

variable "memory" {
  type        = number
  description = "Fargate memory (MiB) of one API task."
  default     = 1024
}

variable "min_capacity" {
  type        = number
  description = "Fewest API tasks auto scaling keeps running."
  default     = 2
}

variable "max_capacity" {
  type        = number
  description = "Most API tasks auto scaling may start."
  default     = 10
}

variable "cpu_target_percent" {
  type        = number
  description = "Target average CPU utilisation of the API service, in percent."
  default     = 60
}

variable "requests_per_target" {
  type        = number
  description = "Target number of requests per task per minute (ALBRequestCountPerTarget)."
  default     = 1000
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the API's CloudWatch log group, in days."
  default     = 365
}

variable "lake_uri" {
  type        = string
  description = "LAKE_URI of the API containers: s3://<bucket>/<prefix>."
}

variable "task_policy_arns" {
  type        = list(string)
  description = "IAM policies for the API's task role, e.g. Kafka producer and lake read-only."
}

variable "kafka_env" {
  type        = map(string)
  description = "Non-secret Kafka variables; a kafka module's client_env output."
}

variable "kafka_secret_arn" {
  type        = string
  description = "Secrets Manager secret with JSON keys username/password for KAFKA_SASL_USERNAME/PASSWORD; null for IAM auth (MSK)."
  default     = null
}

variable "kafka_secret_kms_key_arn" {
  type        = string
  description = "KMS key that encrypts kafka_secret_arn; null with kafka_secret_arn = null."
  default     = null
}

variable "extra_env" {
  type        = map(string)
  description = "More non-secret environment variables for the API containers."
  default     = {}
}
