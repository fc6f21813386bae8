variable "name" {
  type        = string
  description = "Name prefix of every resource and display name of the Confluent environment and cluster, e.g. tidelake-dev."
}

variable "tags" {
  type        = map(string)
  description = "Tags added to the AWS resources (the Secrets Manager secrets and their KMS key)."
  default     = {}
}

variable "cloud_region" {
  type        = string
  description = "AWS region the Confluent Cloud cluster runs in; use the region of the ECS tasks to keep traffic in-region."
}

variable "cluster_type" {
  type        = string
  description = "Confluent Cloud cluster type: basic (dev, cheapest) or standard (SLA, more partitions)."
  default     = "basic"

  validation {
    condition     = contains(["basic", "standard"], var.cluster_type)
    error_message = "cluster_type is basic or standard."
  }
}

variable "availability" {
  type        = string
  description = "SINGLE_ZONE or MULTI_ZONE (MULTI_ZONE needs cluster_type = standard)."
  default     = "SINGLE_ZONE"

  validation {
    condition     = contains(["SINGLE_ZONE", "MULTI_ZONE"], var.availability)
    error_message = "availability is SINGLE_ZONE or MULTI_ZONE."
  }
}

variable "topic_prefix" {
  type        = string
  description = "Environment prefix put in front of every topic name (TIDELAKE_TOPIC_PREFIX), e.g. \"dev.\"."
  default     = ""
}

variable "partitions" {
  type        = number
  description = "Partitions per contract topic (the unit of ingestion parallelism)."
  default     = 6
}

variable "partitions_by_topic" {
  type        = map(number)
  description = "Per-topic partition overrides keyed by logical topic name, e.g. { \"infra.sensor_readings\" = 12 }."
  default     = {}
}

variable "consumer_group_prefix" {
  type        = string
  description = "Prefix of the consumer groups the ingestion service account may use (TIDELAKE_CONSUMER_GROUP starts with it)."
  default     = "tidelake"
}

variable "datagen_enabled" {
  type        = bool
  description = "Run a managed Datagen source connector that writes sample PAGEVIEWS records to its own topic."
  default     = false
}

variable "datagen_max_interval_ms" {
  type        = number
  description = "Upper bound of the Datagen connector's pause between two records, in milliseconds."
  default     = 1000
}

variable "secret_recovery_window_days" {
  type        = number
  description = "Days a deleted Secrets Manager secret can be restored (0 deletes immediately, for dev teardown)."
  default     = 30
}
