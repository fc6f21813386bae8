# Amazon MSK Serverless with IAM authentication (SASL/OAUTHBEARER on port 9098, TLS always on).
# Clients get access in two halves: network (attach client_security_group_id to the task) and
# identity (attach the producer/consumer/admin policy to the task role).

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  tags       = merge(var.tags, { "tidelake:module" = "kafka_msk" })
  arn_prefix = "arn:${data.aws_partition.current.partition}:kafka:${data.aws_region.current.region}:${data.aws_caller_identity.current.account_id}"
  cluster    = "${aws_msk_serverless_cluster.this.cluster_name}/${aws_msk_serverless_cluster.this.cluster_uuid}"
  topics_arn = "${local.arn_prefix}:topic/${local.cluster}/${var.topic_prefix}*"
  groups_arn = "${local.arn_prefix}:group/${local.cluster}/${var.consumer_group_prefix}*"
}

resource "aws_security_group" "cluster" {
  #checkov:skip=CKV2_AWS_5:Attached to the cluster by aws_msk_serverless_cluster.this.vpc_config, which checkov does not follow.
  name_prefix = "${var.name}-msk-"
  description = "MSK Serverless ${var.name}: IAM-authenticated Kafka on 9098 from Tidelake clients only"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-msk" })

  lifecycle {
    create_before_destroy = true
  }
}

# Attach this group to a task to let it reach the brokers.
resource "aws_security_group" "client" {
  #checkov:skip=CKV2_AWS_5:Attached by the caller to the ECS services of the dagster and api modules (extra_security_group_ids).
  name_prefix = "${var.name}-msk-client-"
  description = "Kafka clients of MSK Serverless ${var.name}"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-msk-client" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "cluster_from_clients" {
  security_group_id            = aws_security_group.cluster.id
  description                  = "Kafka SASL/IAM from Tidelake clients"
  ip_protocol                  = "tcp"
  from_port                    = 9098
  to_port                      = 9098
  referenced_security_group_id = aws_security_group.client.id
}

resource "aws_vpc_security_group_egress_rule" "client_to_cluster" {
  security_group_id            = aws_security_group.client.id
  description                  = "Kafka SASL/IAM to MSK Serverless"
  ip_protocol                  = "tcp"
  from_port                    = 9098
  to_port                      = 9098
  referenced_security_group_id = aws_security_group.cluster.id
}

resource "aws_msk_serverless_cluster" "this" {
  cluster_name = var.name

  client_authentication {
    sasl {
      iam {
        enabled = true
      }
    }
  }

  vpc_config {
    subnet_ids         = var.subnet_ids
    security_group_ids = [aws_security_group.cluster.id]
  }

  tags = local.tags
}

data "aws_msk_bootstrap_brokers" "this" {
  cluster_arn = aws_msk_serverless_cluster.this.arn
}

resource "aws_iam_policy" "producer" {
  name        = "${var.name}-kafka-producer"
  description = "Produce to the ${var.name} MSK topics starting with '${var.topic_prefix}'."
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "Connect"
        Effect   = "Allow"
        Action   = ["kafka-cluster:Connect"]
        Resource = aws_msk_serverless_cluster.this.arn
      },
      {
        Sid      = "WriteTopics"
        Effect   = "Allow"
        Action   = ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"]
        Resource = local.topics_arn
      },
    ]
  })
  tags = local.tags
}

resource "aws_iam_policy" "consumer" {
  name        = "${var.name}-kafka-consumer"
  description = "Consume the ${var.name} MSK topics starting with '${var.topic_prefix}' in groups starting with '${var.consumer_group_prefix}'."
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "Connect"
        Effect   = "Allow"
        Action   = ["kafka-cluster:Connect"]
        Resource = aws_msk_serverless_cluster.this.arn
      },
      {
        Sid      = "ReadTopics"
        Effect   = "Allow"
        Action   = ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"]
        Resource = local.topics_arn
      },
      {
        # Offsets are committed to the group after the Delta commit (informational, for lag tools).
        Sid      = "UseGroups"
        Effect   = "Allow"
        Action   = ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"]
        Resource = local.groups_arn
      },
    ]
  })
  tags = local.tags
}

resource "aws_iam_policy" "admin" {
  name        = "${var.name}-kafka-topic-admin"
  description = "Create and configure the ${var.name} MSK topics starting with '${var.topic_prefix}' (partitions, retention)."
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "Connect"
        Effect   = "Allow"
        Action   = ["kafka-cluster:Connect"]
        Resource = aws_msk_serverless_cluster.this.arn
      },
      {
        Sid    = "ManageTopics"
        Effect = "Allow"
        Action = [
          "kafka-cluster:CreateTopic",
          "kafka-cluster:DescribeTopic",
          "kafka-cluster:AlterTopic",
          "kafka-cluster:DescribeTopicDynamicConfiguration",
          "kafka-cluster:AlterTopicDynamicConfiguration",
        ]
        Resource = local.topics_arn
      },
    ]
  })
  tags = local.tags
}
