# Example values for dev: copy to a file of your own and replace every REPLACE. No secrets here:
# Confluent Cloud credentials come from CONFLUENT_CLOUD_API_KEY / CONFLUENT_CLOUD_API_SECRET.
region                = "eu-west-1"
availability_zones    = ["eu-west-1a", "eu-west-1b"]
image                 = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/tidelake:REPLACE_WITH_GIT_SHA"
certificate_arn       = "arn:aws:acm:eu-west-1:123456789012:certificate/REPLACE"
dagster_allowed_cidrs = ["203.0.113.0/24"]
api_allowed_cidrs     = ["203.0.113.0/24"]
topic_partitions      = 3
datagen_enabled       = true
