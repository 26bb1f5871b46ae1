classdef JsonCase < scistack.BaseVariable
end
